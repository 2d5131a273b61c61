"""This node's keepalived state (/run/ha-web/state.json, written by notify) and its locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from .config import Config
from .files import read_json, write_atomic, write_json
from .log import LOG

T = TypeVar("T")
MASTER = "MASTER"
BACKUP = "BACKUP"
STOP = "STOP"
STATE_POLL_SECONDS = 0.1


class NodeState(NamedTuple):
    state: str
    since: float
    previous: str | None = None
    previous_since: float | None = None
    keepalived_pid: int | None = None
    priority: int | None = None
    # (process start time in clock ticks, pid) of the notify that wrote this state:
    # keepalived starts notify processes in order, but they may reach the file out of order.
    notify_order: tuple[int, int] = (0, 0)

    @classmethod
    def from_json(cls, raw: Any) -> NodeState | None:
        if not isinstance(raw, dict):
            return None
        try:
            return cls(
                state=str(raw["state"]),
                since=float(raw["since"]),
                previous=_opt(str, raw.get("previous")),
                previous_since=_opt(float, raw.get("previous_since")),
                keepalived_pid=_opt(int, raw.get("keepalived_pid")),
                priority=_opt(int, raw.get("priority")),
                notify_order=_order(raw.get("notify_order", (0, 0))),
            )
        except (KeyError, TypeError, ValueError, IndexError):
            return None


def _opt(kind: Callable[[Any], T], value: Any) -> T | None:
    return None if value is None else kind(value)


def _order(value: Any) -> tuple[int, int]:
    ticks, pid = value
    return (int(ticks), int(pid))


def read_state(cfg: Config) -> NodeState | None:
    return NodeState.from_json(read_json(cfg.state_file))


def is_master(cfg: Config) -> bool:
    current = read_state(cfg)
    return current is not None and current.state == MASTER


def in_maintenance(cfg: Config) -> bool:
    """Read as keepalived's weight-0 track_file reads it: a number other than 0 means on; a
    missing, empty or non-numeric file means off. Unreadable: off, since keepalived (root)
    still reads it and keeps the node in FAULT."""
    try:
        words = cfg.maintenance_file.read_text().split()
    except FileNotFoundError:
        return False
    except OSError as exc:
        LOG.warning("cannot read %s (%s); assuming no maintenance", cfg.maintenance_file, exc)
        return False
    try:
        return bool(words) and int(words[0]) != 0
    except ValueError:
        return False


def _notify_order() -> tuple[int, int]:
    stat_line = Path("/proc/self/stat").read_text()
    start_ticks = int(stat_line.rsplit(")", 1)[1].split()[19])
    return (start_ticks, os.getpid())


@contextlib.contextmanager
def locked(path: Path, blocking: bool) -> Iterator[bool]:
    """An flock on path; yields False when blocking is off and someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def record_transition(
    cfg: Config, new_state: str, priority: int, keepalived_pid: int
) -> NodeState | None:
    """Write the new state; None if a newer notification already wrote one."""
    order = _notify_order()
    with locked(cfg.state_dir / "state.lock", blocking=True):
        old = read_state(cfg)
        if old is not None and old.notify_order > order:
            LOG.info(
                "ignoring %s: a later keepalived notification already recorded %s",
                new_state,
                old.state,
            )
            return None
        now = time.time()
        if old is None:
            since, previous, previous_since = now, None, None
        elif old.state == new_state:
            since, previous, previous_since = old.since, old.previous, old.previous_since
        else:
            since, previous, previous_since = now, old.state, old.since
        new = NodeState(new_state, since, previous, previous_since, keepalived_pid, priority, order)
        write_json(cfg.state_file, new._asdict())
        write_atomic(cfg.role_file, f"{new_state}\n")
    LOG.info("keepalived says %s (was %s, priority %d)", new_state, previous or "unknown", priority)
    return new


def settle_wait(current: NodeState, settle: float, now: float) -> float:
    """Seconds left before a fresh MASTER may claim (keepalived #2231).

    A MASTER that was BACKUP for a while heard no primary: it claims at once. One that just
    booted or left FAULT may not have heard the primary yet, so it must stay MASTER a while."""
    was_backup_long = (
        current.previous == BACKUP
        and current.previous_since is not None
        and current.since - current.previous_since >= settle
    )
    return 0.0 if was_backup_long else current.since + settle - now


def sleep_while_master(cfg: Config, seconds: float) -> bool:
    """Sleep; False as soon as state.json stops saying MASTER."""
    end = time.monotonic() + seconds
    while True:
        if not is_master(cfg):
            return False
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(STATE_POLL_SECONDS, left))


def keepalived_alive(pid: int | None) -> bool:
    """A pid file or state.json may outlive keepalived, and pids get reused."""
    if not pid or pid <= 0:
        return False
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("keepalived")
    except OSError:
        return False
