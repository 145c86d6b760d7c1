"""Operators' view of deliveries to mediation organizations that failed for good (the
organization refused them, 4xx other than 408/429, or answered nothing good for the whole
retry period), and resending them once the registry is corrected:

    python -m services.mediation.deliveries list [--limit N]
    python -m services.mediation.deliveries resend REFERRAL_ID [--operator NAME]

Calls the mediation service's RPC (settings from the environment: AMQP_URI, RPC_TIMEOUT). A
resend starts a new retry period with the organization's address and secret as registered
now (correct them first: PUT /api/v1/mediation/organizations/{code}).
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()  # nameko's standalone proxy runs on eventlet

import argparse  # noqa: E402
import getpass  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

from services.common.config import Settings  # noqa: E402
from services.common.errors import DomainError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.mediation.deliveries",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the deliveries that failed for good, one JSON line each")
    listing.add_argument("--limit", type=int, default=100)
    resend = commands.add_parser("resend", help="deliver a referral's failed messages again")
    resend.add_argument("referral_id")
    resend.add_argument("--operator", default=getpass.getuser(), help="who resends (kept on the referral)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        with ClusterRpcProxy(settings.nameko_config(), timeout=settings.rpc_timeout) as rpc:
            if args.command == "list":
                for failed in rpc.mediation.failed_deliveries(args.limit):
                    print(json.dumps(failed, ensure_ascii=False))
            else:
                referral = rpc.mediation.resend(args.referral_id, f"operator:{args.operator}")
                print(json.dumps({"referral_id": referral["referral_id"], "delivery": referral["delivery"]["state"],
                                  "next_attempt_at": referral["delivery"]["next_attempt_at"]}, ensure_ascii=False))
    except DomainError as exc:
        print(f"refused: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
