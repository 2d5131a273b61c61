"""What a running lab has made, on disk, so that `python -m lab down` from any shell can
undo it even when the process that made it is gone; and a check that nothing is left.

Processes are ended only by the pids recorded here, and only when their start time
still matches (a pid may have been reused since).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import netns
from lab.nspawn import machine_dirs, remove_machine_dirs

LAB_ROOT = Path("/run/ha-web-lab")
PREFIX_START = "hwl"


@dataclass
class LabState:
    prefix: str
    directory: str
    owner: tuple[int, int]
    """(pid, start time) of the process that runs the lab."""
    namespaces: list[str] = field(default_factory=list)
    inits: list[tuple[int, int]] = field(default_factory=list)
    """(pid, start time) of each running droplet's PID-namespace init."""
    ready: bool = False
    hints: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.directory) / "state.json"

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> LabState:
        raw = json.loads(path.read_text())
        raw["owner"] = tuple(raw["owner"])
        raw["inits"] = [tuple(i) for i in raw["inits"]]
        return cls(**raw)


def start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def me() -> tuple[int, int]:
    pid = os.getpid()
    return pid, start_time(pid) or 0


def _still(process: tuple[int, int]) -> bool:
    return start_time(process[0]) == process[1]


def saved_labs(root: Path = LAB_ROOT) -> list[LabState]:
    states = []
    for path in sorted(root.glob("*/state.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            states.append(LabState.load(path))
    return states


def tear_down(state: LabState, grace: float = 30.0) -> list[str]:
    """Stop the lab's own process (it cleans up), then remove whatever is still recorded."""
    said: list[str] = []
    if _still(state.owner) and state.owner[0] != os.getpid():
        os.kill(state.owner[0], signal.SIGTERM)
        said.append(f"asked the lab process {state.owner[0]} to stop")
        deadline = time.monotonic() + grace
        while _still(state.owner) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _still(state.owner):
            os.kill(state.owner[0], signal.SIGKILL)
            said.append(
                f"killed the lab process {state.owner[0]}: it did not stop in {grace:.0f} s"
            )
    for init in state.inits:
        if _still(init):
            os.kill(init[0], signal.SIGKILL)
            said.append(f"killed droplet init {init[0]} and with it its PID namespace")
    for busy in remove_machine_dirs(state.prefix):
        said.append(f"could not remove {busy}: processes are still in it")
    live = set(netns.existing())
    for name in state.namespaces:
        if name in live:
            netns.ip("netns", "delete", name, check=False)
            said.append(f"deleted network namespace {name}")
    shutil.rmtree(state.directory, ignore_errors=True)
    return said


@dataclass(frozen=True)
class Snapshot:
    """What exists now that a lab could leave behind."""

    namespaces: frozenset[str]
    processes: frozenset[str]
    mounts: frozenset[str]
    lab_dirs: frozenset[str]
    machine_dirs: frozenset[str]
    """Droplets' cgroups and nspawn's propagate directories."""


def droplet_processes() -> set[str]:
    """PID namespaces holding processes whose mounts use a lab disk: droplets' namespaces.

    Other tools may make PID namespaces on this machine at the same time; only the lab's
    overlays name a directory under LAB_ROOT. Namespaces, not pids, are compared, so a
    droplet of another lab that runs throughout (and starts processes) is not a leftover."""
    host = os.readlink("/proc/self/ns/pid")
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            namespace = os.readlink(f"/proc/{entry}/ns/pid")
            if namespace != host and str(LAB_ROOT) in Path(f"/proc/{entry}/mountinfo").read_text():
                found.add(namespace)
    return found


def snapshot() -> Snapshot:
    mounts = {
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if "ha-web" in line or "/run/netns/" + PREFIX_START in line
    }
    lab_dirs = {p.name for p in LAB_ROOT.glob(f"{PREFIX_START}*")} if LAB_ROOT.is_dir() else set()
    return Snapshot(
        frozenset(n for n in netns.existing() if n.startswith(PREFIX_START)),
        frozenset(droplet_processes()),
        frozenset(mounts),
        frozenset(lab_dirs),
        frozenset(machine_dirs(PREFIX_START)),
    )


def leftovers(before: Snapshot, after: Snapshot | None = None) -> list[str]:
    """Everything in `after` (default: now) that was not in `before`, described."""
    after = after or snapshot()
    found = [f"network namespace {n}" for n in sorted(after.namespaces - before.namespaces)]
    found += [f"droplet processes in {n}" for n in sorted(after.processes - before.processes)]
    found += [f"mount {m}" for m in sorted(after.mounts - before.mounts)]
    found += [f"lab directory {LAB_ROOT / d}" for d in sorted(after.lab_dirs - before.lab_dirs)]
    found += [f"left by nspawn: {d}" for d in sorted(after.machine_dirs - before.machine_dirs)]
    return found
