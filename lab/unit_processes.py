"""A unit's processes without cgroups, and ending them the way systemd's KillMode= says.

systemd finds a unit's processes in its cgroup; a lab droplet has none. Every command the
service manager starts begins a session of its own (reaper.spawn), and a daemon that detaches
(nginx) starts one more, which its workers share. So a unit's processes are those in the
unit's sessions, plus the main process's descendants. That still finds nginx's workers after
their master was SIGKILLed and they were re-parented to the manager, as long as the unit
recorded the session the master started: see `main_sessions`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Collection

from lab.reaper import alive, descendants

GONE_TIMEOUT = 5.0
"""Seconds to wait for SIGKILLed processes to be gone (they cannot refuse)."""


def session_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return int(stat.read().rpartition(")")[2].split()[3])
    except (OSError, ValueError, IndexError):
        return None


def main_sessions(main: int) -> set[int]:
    """Every session `main` can be in while it lives: the one it is in now, and the one whose
    id is its own pid.

    A process leaves its session only by setsid(), which starts a session with its pid as id.
    Reading main's session once is not enough: a forking daemon's starter may name it in the
    PID file before it calls setsid() (nginx's starter writes the file and exits about 3 ms
    before), and the workers it forks then live in the session only its pid names. Counting
    that id from the start is safe: while main lives, or any process is in the session it
    started, the kernel reuses neither its pid nor that session id for anyone else."""
    now = session_of(main)
    return {main} if now is None else {main, now}


def live_sessions() -> set[int]:
    """Session ids with a live process. A session that has none can gain none, so a unit may
    forget it: its id could only come back as a new session of a reused pid."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            session = session_of(int(entry))
            if session is not None:
                found.add(session)
    return found


def members(sessions: Collection[int], main: int | None) -> list[int]:
    """Live processes in `sessions`, and main's descendants; never this process."""
    found = set(descendants(main)) if main else set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and session_of(int(entry)) in sessions:
            found.add(int(entry))
    found.discard(os.getpid())
    return sorted(pid for pid in found if alive(pid))


def _signal(pids: Collection[int], sig: signal.Signals) -> list[int]:
    sent = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            sent.append(pid)
    return sent


def _wait_gone(pids: Collection[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def stop_signals(
    mode: str, main: int | None, group: Callable[[], list[int]], timeout: float
) -> None:
    """systemd's STOP_SIGTERM then STOP_SIGKILL, up to the point where ExecStopPost= runs.

    SIGTERM goes to the main process (every mode but none) and, with control-group, to the
    rest of the unit. Once the main process is gone (or, with no main process, the signalled
    rest), ExecStopPost= may run: with mixed, leftover processes are killed after it. If
    nothing was signalled or it outlived `timeout`, SIGKILL goes to the main process and, with
    control-group or mixed, to the whole unit."""
    main = main if main and alive(main) else None
    term = [main] if main and mode != "none" else []
    term += group() if mode == "control-group" else []
    sent = _signal(term, signal.SIGTERM)
    if sent and _wait_gone([main] if main else sent, timeout):
        return
    kill = [main] if main and mode != "none" else []
    kill += group() if mode in ("control-group", "mixed") else []
    _wait_gone(_signal(kill, signal.SIGKILL), GONE_TIMEOUT)


def final_signals(mode: str, group: Callable[[], list[int]], timeout: float) -> None:
    """systemd's FINAL_SIGTERM and FINAL_SIGKILL: what is left after ExecStopPost=."""
    if mode not in ("control-group", "mixed"):
        return
    if mode == "control-group":
        sent = _signal(group(), signal.SIGTERM)
        if sent and _wait_gone(sent, timeout):
            return
    _wait_gone(_signal(group(), signal.SIGKILL), GONE_TIMEOUT)
