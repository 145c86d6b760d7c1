"""Put new organization and/or routing rules in force on every routing instance:

    python -m services.routing.reload [--organization PATH] [--rules PATH]

The files are read here and sent to the admin RPC ``routing.reload`` (settings from the
environment: AMQP_URI, RPC_TIMEOUT); with neither option the instances reload the files
they ship with. Invalid data is refused with every problem listed (exit status 1) and the
data in force stays as it was.
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()  # nameko's standalone proxy runs on eventlet

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from services.common.config import Settings  # noqa: E402
from services.common.errors import DomainError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.routing.reload", description=__doc__.split("\n\n")[0])
    parser.add_argument("--organization", type=Path, help="the organization YAML file")
    parser.add_argument("--rules", type=Path, help="the routing rules YAML file")
    args = parser.parse_args(argv)
    texts = {}
    try:
        for name in ("organization", "rules"):
            path = getattr(args, name)
            if path is not None:
                texts[f"{name}_text"] = path.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    try:
        with ClusterRpcProxy(settings.nameko_config(), timeout=settings.rpc_timeout) as rpc:
            result = rpc.routing.reload(**texts)
    except DomainError as exc:
        print(f"refused, the data in force stays as it was: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
