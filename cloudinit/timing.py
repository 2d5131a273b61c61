"""VRRP timing arithmetic, done here so the templates only print numbers."""

from __future__ import annotations

from components.settings import VrrpSettings


def master_down_interval(advert_interval: float, priority: int) -> float:
    """RFC 5798: how long a backup waits without adverts before it becomes MASTER."""
    skew = (256 - priority) * advert_interval / 256
    return 3 * advert_interval + skew


def settle_seconds(vrrp: VrrpSettings) -> float:
    """How long a node that just booted or left FAULT must stay MASTER before it
    claims the IP (keepalived #2231: a booting backup may be MASTER briefly before
    it hears the primary). Two of the slowest node's down intervals, at least 2 s."""
    slowest = master_down_interval(vrrp.advert_interval, min(vrrp.priorities))
    return round(max(2.0, 2 * slowest), 2)
