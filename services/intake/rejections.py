"""Operators' view of the messages intake rejected (kept whole, newest first):

    python -m services.intake.rejections [--limit N]
"""
from __future__ import annotations

import argparse
import json

from services.common.config import Settings
from services.common.store import database
from services.intake.intake import Intake


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args(argv)
    for row in Intake(database(Settings.from_env(), "intake")).rejections(args.limit):
        print(json.dumps(row, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
