"""The registry of lab components. A new twin is one Component subclass, added to COMPONENTS."""

from __future__ import annotations

from ..state import Lab, LabError
from .authentik import AuthentikTwin
from .base import PROFILES, Component, Health
from .cert_manager import CertManagerStandIn
from .charts import ChartRepository
from .cilium_operator import CiliumOperator
from .external_secrets import ExternalSecrets
from .flux import FLUX_COMPONENTS
from .git import GitServer
from .hetzner import HetznerTwin
from .image_factory import ImageFactory
from .openbao import OpenBao
from .pdns import PowerDNSPrimary, PowerDNSSecondary
from .proxmox import Proxmox
from .sealed_secrets import SealedSecretsController
from .talos import TalosNodes

# Start order; `lab up` without --components runs all of them.
COMPONENTS: tuple[type[Component], ...] = (OpenBao, Proxmox, ImageFactory, HetznerTwin, TalosNodes,
                                         GitServer)
# The Flux controllers wait for a cluster that holds their Deployments (components/flux.py).
COMPONENTS += FLUX_COMPONENTS
# External Secrets Operator, run from its Deployment like them (components/external_secrets.py).
COMPONENTS += (ExternalSecrets,)
# cert-manager's controller is a Python stand-in (components/cert_manager.py); it too waits for its Deployment.
COMPONENTS += (CertManagerStandIn,)
# The Helm chart repository the platform tree's HelmRepositories fetch from (components/charts.py).
COMPONENTS += (ChartRepository,)
# The sealed-secrets controller waits for its Deployment too (components/sealed_secrets.py).
COMPONENTS += (SealedSecretsController,)
# The lab's stand-in for cilium-operator (CRDs, LB IPAM) waits for its Deployment (components/cilium_operator.py).
COMPONENTS += (CiliumOperator,)
# The Authentik twin: its API and OpenID Connect per provider (components/authentik.py).
COMPONENTS += (AuthentikTwin,)
# Real PowerDNS: the primary and its secondary (components/pdns.py).
COMPONENTS += (PowerDNSPrimary, PowerDNSSecondary)

__all__ = ["COMPONENTS", "PROFILES", "Component", "Health", "build", "names"]


def names() -> list[str]:
    return [cls.name for cls in COMPONENTS]


def build(lab: Lab, profile: str, selected: list[str] | None = None) -> list[Component]:
    """Instances for `selected` names (all when None), in registry order; unknown names are an error."""
    by_name = {cls.name: cls for cls in COMPONENTS}
    unknown = sorted(set(selected or ()) - set(by_name))
    if unknown:
        raise LabError(f"unknown component(s): {', '.join(unknown)} (known: {', '.join(by_name)})")
    if profile not in PROFILES:
        raise LabError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    wanted = set(selected) if selected else set(by_name)
    return [cls(lab, profile) for cls in COMPONENTS if cls.name in wanted]
