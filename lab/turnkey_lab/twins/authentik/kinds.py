"""Every model the twin serves, in the order the API's routes are registered."""

from __future__ import annotations

from .applications import APPLICATIONS
from .core import GROUPS, USERS
from .crypto import KEYPAIRS
from .flows import FLOWS
from .mappings import SCOPE_MAPPINGS
from .outposts import OUTPOSTS
from .providers import OAUTH2_PROVIDERS, PROXY_PROVIDERS
from .tokens import TOKENS

KINDS = (GROUPS, USERS, APPLICATIONS, OAUTH2_PROVIDERS, PROXY_PROVIDERS, SCOPE_MAPPINGS, KEYPAIRS, FLOWS,
         OUTPOSTS, TOKENS)
