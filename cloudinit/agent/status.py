"""Status: this node's view (state, maintenance, peers, the IP's holder), for `status`."""

from __future__ import annotations

from typing import Any

from .api import DigitalOcean
from .config import Config
from .errors import AgentError, RetryableError
from .peers import read_peers
from .state import in_maintenance, keepalived_alive, read_state
from .token_file import read_token


def status(cfg: Config) -> dict[str, Any]:
    current = read_state(cfg)
    peers = read_peers(cfg)
    report: dict[str, Any] = {
        "state": current.state if current else None,
        "since": current.since if current else None,
        "previous": current.previous if current else None,
        "keepalived_running": keepalived_alive(current.keepalived_pid if current else None),
        "maintenance": in_maintenance(cfg),
        "reserved_ip": cfg.reserved_ip,
        "self": peers.me._asdict() if peers else None,
        "peers": [p._asdict() for p in peers.peers] if peers else [],
    }
    try:
        holder = DigitalOcean(cfg, read_token(cfg.token_file)).holder()
        report["holder"] = {"id": holder.id, "name": holder.name} if holder else None
    except (AgentError, RetryableError) as exc:
        report["holder"] = None
        report["holder_error"] = str(exc)
    return report
