"""Reconcile (timer): catch missed transitions without ping-pong."""

from __future__ import annotations

import enum

from .api import DigitalOcean, Droplet
from .claim import Claim
from .config import Config
from .errors import FatalApiError, RetryableError
from .files import read_json, write_json
from .health import health_status
from .identity import Identity, load_identity
from .log import LOG
from .state import MASTER, in_maintenance, keepalived_alive, read_state
from .token_file import read_token

HEALTH_FAILURES_BEFORE_CLAIM = 2


class Verdict(enum.Enum):
    HERE = "here"
    CLAIM = "claim"
    CHECK_HOLDER = "check the holder's health"


def judge(cfg: Config, me: Identity, holder: Droplet | None) -> Verdict:
    """Only a higher-priority, healthy member keeps the IP from a MASTER: so two MASTERs agree."""
    if holder is not None and holder.id == me.droplet_id:
        return Verdict.HERE
    if holder is None or cfg.cluster_tag not in holder.tags:
        return Verdict.CLAIM
    mine = cfg.priorities.get(cfg.droplet_name, 0)
    theirs = cfg.priorities.get(holder.name)
    if theirs is not None and theirs < mine:
        return Verdict.CLAIM
    return Verdict.CHECK_HOLDER


def holder_healthy(cfg: Config, holder: Droplet) -> bool:
    if holder.private_ip is None:
        return False
    answer = health_status(cfg, holder.private_ip)
    return answer is not None and 200 <= answer < 400


def count_failure(cfg: Config, holder_id: int) -> int:
    """Consecutive failed health checks of this holder, kept across runs in state_dir."""
    raw = read_json(cfg.reconcile_file)
    before = (
        raw.get("failures", 0) if isinstance(raw, dict) and raw.get("holder_id") == holder_id else 0
    )
    failures = int(before) + 1
    write_json(cfg.reconcile_file, {"holder_id": holder_id, "failures": failures})
    return failures


def reset_failures(cfg: Config) -> None:
    if cfg.reconcile_file.exists():
        write_json(cfg.reconcile_file, {"holder_id": None, "failures": 0})


def reconcile(cfg: Config) -> int:
    current = read_state(cfg)
    if current is None or not keepalived_alive(current.keepalived_pid):
        LOG.info("keepalived's VRRP process from state.json is not running; nothing to reconcile")
        return 0
    if current.state != MASTER:
        reset_failures(cfg)
        return 0
    if in_maintenance(cfg):
        LOG.info("MASTER but in maintenance: leaving %s where it is", cfg.reserved_ip)
        return 0
    api = DigitalOcean(cfg, read_token(cfg.token_file))
    me = load_identity(cfg)
    try:
        holder = api.holder()
    except (FatalApiError, RetryableError) as exc:
        LOG.error("reconcile could not read %s: %s", cfg.reserved_ip, exc)
        return 1
    verdict = judge(cfg, me, holder)
    if verdict is Verdict.HERE:
        reset_failures(cfg)
        return 0
    if verdict is Verdict.CHECK_HOLDER and holder is not None:
        if holder_healthy(cfg, holder):
            reset_failures(cfg)
            LOG.info(
                "%s is on %s, a healthy higher-priority member; leaving it",
                cfg.reserved_ip,
                holder.name,
            )
            return 0
        failures = count_failure(cfg, holder.id)
        if failures < HEALTH_FAILURES_BEFORE_CLAIM:
            LOG.warning(
                "%s holds %s but failed its health check (%d in a row)",
                holder.name,
                cfg.reserved_ip,
                failures,
            )
            return 0
    reset_failures(cfg)
    LOG.info(
        "MASTER without %s (on %s): claiming it",
        cfg.reserved_ip,
        holder.name if holder else "nobody",
    )
    return Claim(cfg, api, me).run().exit_code
