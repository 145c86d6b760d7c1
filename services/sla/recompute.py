"""After a change to the calendars (services/common/policy/data/calendars.yaml: a new
year's holidays, an institution's own days), recompute the open clocks it touches:

    python -m services.sla.recompute [--institution CODE]

Calls the admin RPC ``sla.recompute_calendar`` (settings from the environment); the SLA
instances reload the policies and calendars and move the due dates and warnings of the
open working-day clocks whose window holds a changed day.
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()  # nameko's standalone proxy runs on eventlet

import argparse  # noqa: E402
import json  # noqa: E402

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from services.common.config import Settings  # noqa: E402

# Recomputing many clocks takes longer than an ordinary call may.
TIMEOUT = 600


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.sla.recompute", description=__doc__.split("\n\n")[0])
    parser.add_argument("--institution", help="only this institution's clocks (default: every institution)")
    args = parser.parse_args(argv)
    with ClusterRpcProxy(Settings.from_env().nameko_config(), timeout=TIMEOUT) as rpc:
        result = rpc.sla.recompute_calendar(args.institution)
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
