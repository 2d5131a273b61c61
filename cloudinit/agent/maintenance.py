"""Maintenance: a planned switchover (as root or ha-web; both may replace the file)."""

from __future__ import annotations

import os
import time

from .api import DigitalOcean, Droplet
from .config import Config
from .errors import AgentError, FatalApiError, RetryableError
from .files import write_atomic
from .health import health_status, health_url
from .identity import Identity, load_identity
from .log import LOG
from .peers import Member, read_peers
from .state import in_maintenance, read_state
from .token_file import read_token


def set_maintenance(cfg: Config, on: bool) -> None:
    """keepalived tracks this file (weight 0): 1 puts the node in FAULT, 0 lets it out."""
    try:
        write_atomic(cfg.maintenance_file, "1\n" if on else "0\n")
    except PermissionError:
        raise AgentError(
            f"cannot write {cfg.maintenance_file}: run as root or as ha-web "
            "(sudo ha-web-agent maintenance ...)"
        ) from None
    except FileNotFoundError:
        raise AgentError(
            f"{cfg.maintenance_file.parent} does not exist: run `systemd-tmpfiles --create`"
        ) from None
    LOG.info("maintenance %s (set by uid %d)", "on" if on else "off", os.getuid())


def healthy_peer(cfg: Config) -> tuple[Member | None, str]:
    """A peer keepalived knows whose health URL answers 2xx, or why there is none."""
    peers = read_peers(cfg)
    if peers is None or not peers.peers:
        return None, f"no peer is known ({cfg.peers_file} lists none; check ha-web-peers.timer)"
    failures = []
    for peer in peers.peers:
        answer = health_status(cfg, peer.private_ip)
        if answer is not None and 200 <= answer < 300:
            return peer, ""
        failures.append(
            f"{health_url(cfg, peer.private_ip)} ({peer.name}): {answer or 'no answer'}"
        )
    return None, "no other member answers its health URL: " + "; ".join(failures)


def new_holder(cfg: Config, api: DigitalOcean, me: Identity) -> tuple[Droplet | None, str]:
    """The cluster member other than this one that holds the IP and answers 2xx, or why not."""
    ip = cfg.reserved_ip
    try:
        holder = api.holder()
    except RetryableError as exc:
        return None, f"the API did not answer ({exc})"
    if holder is None:
        return None, f"{ip} is assigned to no droplet"
    if holder.id == me.droplet_id:
        return None, f"{ip} is still on this droplet"
    if cfg.cluster_tag not in holder.tags:
        return None, f"{ip} is on {holder.name}, which is not tagged {cfg.cluster_tag}"
    answer = health_status(cfg, holder.private_ip) if holder.private_ip else None
    if answer is None or not 200 <= answer < 300:
        url = health_url(cfg, holder.private_ip or "?")
        return None, f"{ip} is on {holder.name}, but {url} answers {answer or 'nothing'}"
    return holder, ""


def wait_for_takeover(
    cfg: Config, api: DigitalOcean, me: Identity, timeout: float
) -> tuple[Droplet | None, str]:
    deadline = time.monotonic() + timeout
    while True:
        holder, why = new_holder(cfg, api, me)
        left = deadline - time.monotonic()
        if holder is not None or left <= 0:
            return holder, why
        time.sleep(min(cfg.poll_interval, left))


def maintenance_on(cfg: Config, timeout: float, force: bool) -> int:
    """Done only when another member holds the IP and answers: then this node may be touched.

    A handover that fails rolls back: maintenance off again, so that this node stays eligible
    for MASTER. Left on, a later death of the holder would leave no member that may take the
    IP. --force keeps it on regardless: the operator takes the node out knowingly."""
    api = DigitalOcean(cfg, read_token(cfg.token_file))
    me = load_identity(cfg)
    if not force:
        peer, why = healthy_peer(cfg)
        if peer is None:
            LOG.error(
                "refusing maintenance on: %s. Nothing could serve the site while %s is "
                "touched. Bring another member back first, or pass --force",
                why,
                cfg.droplet_name,
            )
            return 1
    set_maintenance(cfg, True)
    print(
        f"maintenance on: keepalived puts {cfg.droplet_name} in FAULT; waiting up to "
        f"{timeout:g}s for {cfg.reserved_ip} to move to a member that answers",
        flush=True,
    )
    try:
        holder, why = wait_for_takeover(cfg, api, me, timeout)
    except FatalApiError as exc:
        return _failed(cfg, force, f"the API refused: {exc}")
    except KeyboardInterrupt:
        _failed(cfg, force, "interrupted before the handover was confirmed")
        return 130
    if holder is None:
        current = read_state(cfg)
        state = current.state if current else "unknown"
        hint = (
            ""
            if state == "FAULT"
            else f" keepalived here says {state}, not FAULT: is it running with a "
            f"keepalived.conf that tracks {cfg.maintenance_file}?"
        )
        return _failed(
            cfg,
            force,
            f"{cfg.reserved_ip} did not move to a member that answers within {timeout:g}s: "
            f"{why}.{hint} Check the other members and retry with a longer --timeout",
        )
    url = health_url(cfg, holder.private_ip or "?")
    print(
        f"done: {cfg.reserved_ip} is on {holder.name}, and {url} answers. {cfg.droplet_name} "
        "stays out of service until `ha-web-agent maintenance off`"
    )
    return 0


def _failed(cfg: Config, force: bool, why: str) -> int:
    if force:
        LOG.error(
            "maintenance stays on (--force), but the handover failed: %s. Undo with "
            "`ha-web-agent maintenance off`",
            why,
        )
        return 1
    set_maintenance(cfg, False)
    LOG.error(
        "maintenance rolled back to off: the handover failed: %s. %s rejoins the cluster "
        "once its health check passes; do not touch it. To take it out anyway, pass --force",
        why,
        cfg.droplet_name,
    )
    return 1


def maintenance_off(cfg: Config) -> int:
    set_maintenance(cfg, False)
    print(
        f"maintenance off: {cfg.droplet_name} leaves FAULT once its health check passes. "
        f"It becomes BACKUP or, with failback on, MASTER, and takes {cfg.reserved_ip} back "
        f"after settle_seconds ({cfg.settle_seconds:g}s)"
    )
    return 0


def maintenance_status(cfg: Config) -> int:
    current = read_state(cfg)
    print(
        f"maintenance {'on' if in_maintenance(cfg) else 'off'} ({cfg.maintenance_file}); "
        f"keepalived state: {current.state if current else 'unknown'}"
    )
    return 0
