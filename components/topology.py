"""Who is who in a cluster: names, roles, initial VRRP states and priorities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from components.settings import Settings

VrrpState = Literal["MASTER", "BACKUP"]


@dataclass(frozen=True)
class NodePlan:
    index: int
    name: str
    role: str
    """What the page and the outputs call it: "Primary", "Secondary 1", ..."""
    state: VrrpState
    priority: int


def plan_nodes(settings: Settings) -> list[NodePlan]:
    """Node 0 is the primary. With failback off every node starts BACKUP,
    because keepalived honours `nopreempt` only on a BACKUP instance."""
    return [
        NodePlan(
            index=index,
            name=f"{settings.name_prefix}-{index}",
            role="Primary" if index == 0 else f"Secondary {index}",
            state="MASTER" if index == 0 and settings.vrrp.failback else "BACKUP",
            priority=priority,
        )
        for index, priority in enumerate(settings.vrrp.priorities)
    ]
