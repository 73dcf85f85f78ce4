"""`python -m turnkey_lab.twins.proxmox --data DIR --host IP --port N --cert C --key K [--schema F] [--ca F]`."""

import sys
from pathlib import Path

from ..base import arguments, serve
from .server import ProxmoxTwin

parser = arguments("Proxmox VE API twin")
parser.add_argument("--schema", type=Path, help="pve-9.1-api-schema.json (absent: no validation)")
parser.add_argument("--ca", help="CA bundle download-url verifies against (the lab CA)")
args = parser.parse_args()
twin = ProxmoxTwin(args.data, args.profile, args.schema, args.ca)
sys.exit(serve(twin, args.host, args.port, args.cert, args.key))
