"""The validated, typed settings of one ha-web stack.

Defaults live here and nowhere else in Python; `Pulumi.yaml` declares the same
defaults for the CLI, and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi

KeepalivedSourceKind = Literal["tarball", "package"]

DEFAULT_KEEPALIVED_VERSION = "2.3.4"
# Upstream publishes only MD5. These sha256 sums were checked against Debian's
# byte-identical orig tarballs (DESIGN decision 5).
KNOWN_KEEPALIVED_SHA256 = {
    "2.3.4": "6afd95ddb7d3e0d3b8b8e5b3a489144131b61a01b06d29e883d0c44acc8a36bf",
    "2.4.3": "a0faef8e401c143487b131b526df7541c1e33d9b8814642fa9dfe8bb250a9632",
}
KEEPALIVED_URL_TEMPLATE = "https://www.keepalived.org/software/keepalived-{version}.tar.gz"

DEFAULTS: dict[str, object] = {
    "region": "nyc3",
    "dropletSize": "s-1vcpu-1gb",
    "image": "ubuntu-24-04-x64",
    "nodeCount": 2,
    "vpcIpRange": "",
    "sshKeys": [],
    "adminCidrs": [],
    "keepalivedVersion": DEFAULT_KEEPALIVED_VERSION,
    "keepalivedSha256": "",
    "keepalivedUrl": "",
    "keepalivedSource": "tarball",
    "vrrpVersion": 3,
    "vrrpRouterId": 51,
    "advertInterval": 0.3,
    "priorities": [],
    "healthPath": "/healthz",
    "healthInterval": 0.5,
    "healthTimeout": 0.4,
    "healthFall": 2,
    "healthRise": 2,
    "failback": True,
    "reconcileInterval": 10,
    "peersRefreshInterval": 30,
    "claimTimeout": 60,
    "apiBaseUrl": "https://api.digitalocean.com",
    "allowInsecureApi": False,
    "metadataBaseUrl": "http://169.254.169.254",
}


@dataclass(frozen=True)
class KeepalivedPin:
    """Which keepalived every droplet runs, and how it gets it."""

    version: str
    sha256: str
    url: str
    source: KeepalivedSourceKind


@dataclass(frozen=True)
class VrrpSettings:
    version: int
    router_id: int
    advert_interval: float
    priorities: tuple[int, ...]
    """One per node, node 0 first and highest."""
    failback: bool


@dataclass(frozen=True)
class HealthCheck:
    path: str
    interval: float
    timeout: float
    fall: int
    rise: int


@dataclass(frozen=True)
class AgentTimings:
    reconcile_interval: int
    peers_refresh_interval: int
    claim_timeout: int


@dataclass(frozen=True)
class Settings:
    stack: str
    region: str
    droplet_size: str
    image: str
    node_count: int
    vpc_ip_range: str | None
    ssh_keys: tuple[str, ...]
    admin_cidrs: tuple[str, ...]
    keepalived: KeepalivedPin
    vrrp: VrrpSettings
    health: HealthCheck
    agent: AgentTimings
    api_base_url: str
    allow_insecure_api: bool
    """Lets apiBaseUrl be plain http on a non-loopback address (a test emulator)."""
    metadata_base_url: str

    @property
    def name_prefix(self) -> str:
        return f"ha-web-{self.stack}"

    @property
    def cluster_tag(self) -> str:
        return f"ha-web-{self.stack}"


@dataclass(frozen=True)
class Secrets:
    failover_token: pulumi.Output[str]
    vrrp_password: pulumi.Output[str] | None
    """None means: generate one (only VRRPv2 uses it)."""
