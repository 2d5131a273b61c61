"""What the renderer needs to know about one droplet, as plain values."""

from __future__ import annotations

from dataclasses import dataclass

from components.settings import Settings
from components.topology import NodePlan


@dataclass(frozen=True)
class DropletInputs:
    settings: Settings
    node: NodePlan
    nodes: tuple[NodePlan, ...]
    reserved_ip: str
    failover_token: str
    vrrp_password: str | None
    """Only VRRPv2 uses it."""
