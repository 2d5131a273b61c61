"""Claim: move the reserved IP to this droplet, retrying within claim_timeout."""

from __future__ import annotations

import enum
import random
import time

from .api import Action, DigitalOcean
from .config import Config
from .errors import FatalApiError, RetryableError
from .holder_check import Verdict, holder_role, judge, still_serves
from .identity import Identity, load_identity
from .log import LOG
from .state import (
    MASTER,
    in_maintenance,
    is_master,
    locked,
    read_state,
    settle_wait,
    sleep_while_master,
)
from .token_file import read_token


class Outcome(enum.Enum):
    ASSIGNED = "assigned"
    ALREADY_HERE = "already here"
    HOLDER_SERVES = "a higher-priority member holds it and serves"
    NOT_MASTER = "not MASTER"
    MAINTENANCE = "in maintenance"
    BUSY = "another claim is running"
    GAVE_UP = "gave up"
    FAILED = "failed"

    @property
    def exit_code(self) -> int:
        return 1 if self in (Outcome.GAVE_UP, Outcome.FAILED) else 0


class _OutOfTimeError(Exception):
    pass


def backoff_delay(cfg: Config, attempt: int, hint: float | None) -> float:
    """Exponential with jitter, bounded by backoff_max; the server's hint is a floor."""
    base = min(cfg.backoff_max, cfg.backoff_initial * 2 ** min(attempt, 30))
    delay = random.uniform(base / 2, base)
    return max(delay, hint) if hint is not None else delay


class Claim:
    def __init__(
        self, cfg: Config, api: DigitalOcean, identity: Identity, check_holder: bool = True
    ) -> None:
        """check_holder: judge the holder before taking the IP. Off only for a caller that
        has just judged it (reconcile)."""
        self.cfg = cfg
        self.me = identity
        self.check_holder = check_holder
        self.deadline = time.monotonic() + cfg.claim_timeout
        # Each request ends by the deadline too, however slowly the API answers.
        self.api = api.until(self.deadline)

    def run(self) -> Outcome:
        with locked(self.cfg.state_dir / "claim.lock", blocking=False) as mine:
            if not mine:
                LOG.info("a claim is already running; leaving it to finish")
                return Outcome.BUSY
            outcome = self._retrying()
        if outcome is Outcome.NOT_MASTER:
            LOG.info("not MASTER any more; claim of %s stopped", self.cfg.reserved_ip)
        return outcome

    def _retrying(self) -> Outcome:
        attempt = 0
        while True:
            if in_maintenance(self.cfg):
                LOG.info("not claiming %s: this node is in maintenance", self.cfg.reserved_ip)
                return Outcome.MAINTENANCE
            if not self._settled_master():
                return Outcome.NOT_MASTER
            try:
                return self._attempt()
            except FatalApiError as exc:
                LOG.error("claim of %s stopped: %s", self.cfg.reserved_ip, exc)
                return Outcome.FAILED
            except _OutOfTimeError as exc:
                return self._give_up(str(exc))
            except RetryableError as exc:
                delay = backoff_delay(self.cfg, attempt, exc.retry_after)
                attempt += 1
                if time.monotonic() + delay >= self.deadline:
                    return self._give_up(str(exc))
                LOG.warning("claim attempt %d failed (%s); retrying in %.2fs", attempt, exc, delay)
                if not sleep_while_master(self.cfg, delay):
                    return Outcome.NOT_MASTER

    def _give_up(self, last_error: str) -> Outcome:
        LOG.error(
            "gave up claiming %s after claim_timeout (%gs); last error: %s. "
            "The reconcile timer will try again",
            self.cfg.reserved_ip,
            self.cfg.claim_timeout,
            last_error,
        )
        return Outcome.GAVE_UP

    def _settled_master(self) -> bool:
        while True:
            current = read_state(self.cfg)
            if current is None or current.state != MASTER:
                return False
            wait = settle_wait(current, self.cfg.settle_seconds, time.time())
            if wait <= 0:
                return True
            LOG.info(
                "MASTER after %s: waiting %.2fs to be sure it stays MASTER", current.previous, wait
            )
            if not sleep_while_master(self.cfg, wait):
                return False

    def _attempt(self) -> Outcome:
        holder = self.api.holder()
        verdict = judge(self.cfg, self.me, holder)
        if verdict is Verdict.HERE:
            LOG.info("%s is already on this droplet (%d)", self.cfg.reserved_ip, self.me.droplet_id)
            return Outcome.ALREADY_HERE
        if verdict is Verdict.CHECK_HOLDER and self.check_holder and holder is not None:
            role = holder_role(self.cfg, holder)
            if still_serves(role):
                LOG.info(
                    "%s is on %s, a member of higher priority that answers as MASTER on its "
                    "public address %s: leaving it there (its VRRP does not reach this node)",
                    self.cfg.reserved_ip,
                    holder.name,
                    holder.public_ip,
                )
                return Outcome.HOLDER_SERVES
            LOG.info(
                "%s holds %s but answers %s on its public address: taking it",
                holder.name,
                self.cfg.reserved_ip,
                role or "nothing",
            )
        if not is_master(self.cfg):
            return Outcome.NOT_MASTER
        held_by = f"{holder.name} ({holder.id})" if holder else "nobody"
        LOG.info(
            "assigning %s to droplet %d; it is on %s",
            self.cfg.reserved_ip,
            self.me.droplet_id,
            held_by,
        )
        action = self.api.assign(self.me.droplet_id)
        while action.status != "completed":
            if action.status == "errored":
                raise RetryableError(f"assign action {action.id} errored")
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise _OutOfTimeError(f"assign action {action.id} still {action.status}")
            if not sleep_while_master(self.cfg, min(self.cfg.poll_interval, left)):
                return Outcome.NOT_MASTER
            if time.monotonic() < self.deadline:  # else the check above says what was left
                action = self._poll(action)
        LOG.info("%s is now on this droplet (action %d completed)", self.cfg.reserved_ip, action.id)
        return Outcome.ASSIGNED

    def _poll(self, action: Action) -> Action:
        """A poll the deadline cuts short reports the action, not the cut request."""
        try:
            return self.api.action(action.id)
        except RetryableError:
            if time.monotonic() < self.deadline:
                raise
            return action


def claim(cfg: Config) -> Outcome:
    if not is_master(cfg):
        LOG.info("not claiming %s: state.json does not say MASTER", cfg.reserved_ip)
        return Outcome.NOT_MASTER
    api = DigitalOcean(cfg, read_token(cfg.token_file))
    return Claim(cfg, api, load_identity(cfg)).run()
