"""Reconcile (timer): catch missed transitions without ping-pong."""

from __future__ import annotations

from .api import DigitalOcean
from .claim import Claim
from .config import Config
from .errors import FatalApiError, RetryableError
from .files import read_json, write_json
from .holder_check import Verdict, holder_role, judge, still_serves
from .identity import load_identity
from .log import LOG
from .state import MASTER, in_maintenance, keepalived_alive, read_state
from .token_file import read_token

HEALTH_FAILURES_BEFORE_CLAIM = 2


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
        role = holder_role(cfg, holder)
        if still_serves(role):
            reset_failures(cfg)
            LOG.info(
                "%s is on %s, a higher-priority member that answers as MASTER; leaving it",
                cfg.reserved_ip,
                holder.name,
            )
            return 0
        if role is None:
            # No answer may be a lost packet: only a second one in a row moves the IP. An
            # answer other than MASTER (FAULT, BACKUP, STOP) is the holder's own word.
            failures = count_failure(cfg, holder.id)
            if failures < HEALTH_FAILURES_BEFORE_CLAIM:
                LOG.warning(
                    "%s holds %s but its public address %s did not answer (%d in a row)",
                    holder.name,
                    cfg.reserved_ip,
                    holder.public_ip,
                    failures,
                )
                return 0
    reset_failures(cfg)
    LOG.info(
        "MASTER without %s (on %s): claiming it",
        cfg.reserved_ip,
        holder.name if holder else "nobody",
    )
    return Claim(cfg, api, me, check_holder=False).run().exit_code
