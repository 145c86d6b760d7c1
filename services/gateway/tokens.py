"""Issue a local bearer token for a sample user.

    .venv/bin/python -m services.gateway.tokens banka-sd-yt-handler
    curl -H "Authorization: Bearer $(.venv/bin/python -m services.gateway.tokens admin)" \\
         http://127.0.0.1:8000/api/v1/org/units

Users come from ``config/users.yaml`` (``--users`` for another file). The token is HS256,
signed with ``JWT_SECRET`` from the environment; unset, that is the local default
``services.common.config.LOCAL_JWT_SECRET`` ("local-development-secret-not-for-production"),
which the gateway also uses when unset. Never use the default outside a developer machine.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from services.common.config import Settings

from .auth import issue_token

DEFAULT_USERS = Path(__file__).resolve().parents[2] / "config" / "users.yaml"


def load_users(path: Path = DEFAULT_USERS) -> dict[str, dict]:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    return {user["sub"]: user for user in data.get("users", [])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.gateway.tokens",
        description="Print a JWT for a sample user of config/users.yaml "
                    "(secret: $JWT_SECRET, else the local default).",
    )
    parser.add_argument("user_id", nargs="?", help="the user's sub; omit with --list")
    parser.add_argument("--ttl", type=int, default=8 * 3600, help="seconds (default 8 hours)")
    parser.add_argument("--users", type=Path, default=DEFAULT_USERS, help="users YAML file")
    parser.add_argument("--list", action="store_true", help="list the sample users")
    args = parser.parse_args(argv)

    users = load_users(args.users)
    if args.list or not args.user_id:
        for user in users.values():
            print(f"{user['sub']:28} {user['unit']:18} {','.join(user['roles']):32} {user['name']}")
        return 0 if args.list else 2
    user = users.get(args.user_id)
    if user is None:
        print(f"unknown user {args.user_id!r}; known: {', '.join(users)}", file=sys.stderr)
        return 1
    print(issue_token(user, Settings.from_env().jwt_secret, ttl=args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
