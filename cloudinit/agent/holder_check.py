"""Whether a MASTER may take the reserved IP from the member that holds it.

Two nodes are both MASTER when VRRP between them is lost: a partition of the VPC, or a peer
that died. Only the VPC is in doubt then, so the holder is judged over its public address: a
holder that still answers there as MASTER keeps the IP from any member of equal or lower
priority. One higher-priority MASTER (failback) and one holder that is not MASTER both lose
it, so two MASTERs always agree on one holder and the IP never ping-pongs."""

from __future__ import annotations

import enum

from .api import Droplet
from .config import ROLE_PATH, Config
from .errors import RetryableError
from .identity import Identity
from .state import MASTER
from .transport import http_request

ROLE_BYTES = 32
"""A role is one word: more is not an answer from ha-web."""


class Verdict(enum.Enum):
    HERE = "here"
    CLAIM = "claim"
    CHECK_HOLDER = "check the holder"


def judge(cfg: Config, me: Identity, holder: Droplet | None) -> Verdict:
    """Only a higher-priority member that still serves keeps the IP from a MASTER."""
    if holder is not None and holder.id == me.droplet_id:
        return Verdict.HERE
    if holder is None or cfg.cluster_tag not in holder.tags:
        return Verdict.CLAIM
    mine = cfg.priorities.get(cfg.droplet_name, 0)
    theirs = cfg.priorities.get(holder.name)
    if theirs is not None and theirs < mine:
        return Verdict.CLAIM
    return Verdict.CHECK_HOLDER


def role_url(cfg: Config, address: str) -> str:
    return f"http://{address}:{cfg.health_port}{ROLE_PATH}"


def holder_role(cfg: Config, holder: Droplet) -> str | None:
    """What the holder's keepalived says it is (MASTER, BACKUP, FAULT, STOP), read from its
    public address; None when it does not answer as an ha-web node."""
    if holder.public_ip is None:
        return None
    try:
        reply = http_request("GET", role_url(cfg, holder.public_ip), cfg.holder_probe_timeout)
    except RetryableError:
        return None
    role = reply.body[:ROLE_BYTES].decode("ascii", "replace").strip()
    return role if reply.status == 200 and role.isalpha() else None


def still_serves(role: str | None) -> bool:
    return role == MASTER
