"""Starting and reaping processes inside a droplet, as its init would.

The droplet's PID 1 is the sandbox's `sleep`, which reaps nothing. The lab's service
manager therefore makes itself a child subreaper: daemons that double-fork (nginx) end
up as its children, and one thread reaps every child, so a stopped daemon does not stay
a zombie that still looks alive. Because that thread reaps all children, nothing in the
process may wait on a child itself: everything is started through `Reaper.spawn`.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Child:
    pid: int
    popen: subprocess.Popen[bytes] | None
    """None for an adopted process (one this process did not start but will reap)."""
    done: threading.Event = field(default_factory=threading.Event)
    returncode: int | None = None
    """As subprocess reports it: negative for a signal."""

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.popen.stdout if self.popen else None

    def wait(self, timeout: float | None = None) -> int | None:
        self.done.wait(timeout)
        return self.returncode


class Reaper:
    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
        self._children: dict[int, Child] = {}
        # Exits of pids not (yet) registered: a child may exit before spawn() records it.
        self._early: dict[int, int] = {}
        self._lock = threading.Condition()
        threading.Thread(target=self._loop, name="reaper", daemon=True).start()

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        user: str | None = None,
        group: str | None = None,
        capture: bool = True,
        stdin: int | IO[bytes] = subprocess.DEVNULL,
    ) -> Child:
        """Start argv in its own session (so a stop can signal its group) and track it."""
        with self._lock:
            popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                stdin=stdin,
                stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
                user=user,
                group=group,
                extra_groups=[] if user else None,
                start_new_session=True,
                cwd="/",
            )
            child = Child(popen.pid, popen)
            self._children[popen.pid] = child
            if popen.pid in self._early:
                self._finish(child, self._early.pop(popen.pid))
            self._lock.notify_all()
        return child

    def adopt(self, pid: int) -> Child:
        """Track a process that was not spawned here but is reaped here: a daemon that forked
        away from its starter and was re-parented to this subreaper (a Type=forking main)."""
        with self._lock:
            child = Child(pid, None)
            status = self._early.pop(pid, None)
            # An exit recorded while the pid is still running belonged to an earlier process.
            if status is not None and not alive(pid):
                self._finish(child, status)
            else:
                self._children[pid] = child
        return child

    def _finish(self, child: Child, status: int) -> None:
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.popen is not None:
            # Tell Popen it is done, so it never waits on a pid that may belong to someone else.
            child.popen.returncode = child.returncode
        child.done.set()

    def _loop(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                with self._lock:
                    self._lock.wait(0.5)
                continue
            with self._lock:
                child = self._children.pop(pid, None)
                if child is not None:
                    self._finish(child, status)
                elif len(self._early) < 10_000:
                    self._early[pid] = status


def alive(pid: int) -> bool:
    """Running, and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    """pid's children, grandchildren and so on, from /proc (no cgroups in the lab)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                ppid = int(stat.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
