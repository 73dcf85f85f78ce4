"""`python -m turnkey_lab.twins.image_factory --data DIR --host IP --port N --cert C --key K [--profile P]`."""

import sys

from ..base import arguments, serve
from .server import ImageFactoryTwin

args = arguments("Talos Image Factory twin").parse_args()
sys.exit(serve(ImageFactoryTwin(args.data, args.profile), args.host, args.port, args.cert, args.key))
