"""`python -m turnkey_lab.twins.authentik --data=... --host=... --port=... --cert=... --key=... [--spec=...]`"""

from __future__ import annotations

import sys
from pathlib import Path

from .. import base
from .twin import AuthentikTwin


def main(argv: list[str] | None = None) -> int:
    parser = base.arguments("Authentik twin")
    parser.add_argument("--spec", type=Path, default=None, help="the OpenAPI document (absent: no validation)")
    parser.add_argument("--spec-cache", type=Path, default=None, help="where its parsed form is kept")
    args = parser.parse_args(argv)
    twin = AuthentikTwin(args.data, args.profile, spec_path=args.spec, public_url=f"https://{args.host}:{args.port}",
                         spec_cache=args.spec_cache)
    return base.serve(twin, args.host, args.port, args.cert, args.key)


if __name__ == "__main__":
    sys.exit(main())
