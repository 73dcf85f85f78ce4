"""`python -m turnkey_lab.twins.hetzner --data=... --host=... --port=... --cert=... --key=...`"""

from __future__ import annotations

import sys
from pathlib import Path

from ..base import arguments, serve
from .talos_hook import DEFAULT_SELECTOR
from .twin import HetznerTwin


def main(argv: list[str] | None = None) -> int:
    parser = arguments("Hetzner Cloud API twin")
    parser.add_argument("--rate-limit", type=int, default=3600, help="requests per hour")
    parser.add_argument("--spec", type=Path, default=None, help="the OpenAPI document (absent: no validation)")
    parser.add_argument("--talos-selector", default=DEFAULT_SELECTOR)
    args = parser.parse_args(argv)
    twin = HetznerTwin(args.data, args.profile, rate_limit=args.rate_limit, spec_path=args.spec,
                       talos_selector=args.talos_selector)
    return serve(twin, args.host, args.port, args.cert, args.key)


if __name__ == "__main__":
    sys.exit(main())
