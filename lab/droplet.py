"""One lab droplet: the cached Debian image booted under systemd-nspawn (lab/nspawn.py),
with real systemd, journald and cloud-init running its user-data, unmodified.

It joins the network namespace the lab made for it (lab/topology.py). A crash kills the
container's init, and with it every process, and replaces the droplet's network namespace
with a fresh one, links down: powered off it answers nothing, and the next boot starts from
a fresh kernel state (no nft tables, addresses or sockets left over) on the disk the last
boot left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab.nspawn import Machine, NspawnError, Seed, clean_env
from lab.rootfs import SUITE, package_versions
from lab.topology import DropletLinks, Topology

REPO = Path(__file__).resolve().parent.parent
BOOTED = "lab: boot finished"
BOOT_TIMEOUT = 300.0
"""Seconds until cloud-init is done: keepalived is built at boot, on two shared cores."""

Echo = Callable[[str], None]


class DropletError(RuntimeError):
    """A droplet did not boot or answer; the message says where to look."""


@dataclass
class DropletSpec:
    name: str
    droplet_id: int
    public_ip: str
    private_ip: str
    user_data: str
    tags: list[str] = field(default_factory=list)


@dataclass
class BootLine:
    time: float
    text: str


class Droplet:
    def __init__(
        self,
        spec: DropletSpec,
        short: str,
        *,
        lab_dir: Path,
        topology: Topology,
        rootfs: Path,
        files: Mapping[str, bytes],
        notes: Sequence[str],
        echo: Echo,
    ) -> None:
        self.spec = spec
        self.short = short
        self.topology = topology
        self.echo = echo
        self.netns = f"{topology.prefix}-{short}"
        self.dir = lab_dir / short
        self.boot_lines: list[BootLine] = []
        self.boots = 0
        seed = Seed(spec.name, str(spec.droplet_id), spec.user_data)
        self.machine = Machine(self.netns, rootfs, self.dir, self.netns, seed, files=files)
        self.root = self.machine.upper
        """The droplet's own changes to the image (the overlay's upper directory)."""
        self.notes = list(notes)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def links(self) -> DropletLinks:
        return DropletLinks(self.netns, self.short, self.spec.public_ip, self.spec.private_ip)

    # -- lifecycle --

    def create(self) -> None:
        """The droplet's network; its disk is laid at its first boot."""
        self.topology.add_droplet(self.links)

    def boot(self) -> None:
        """Power on; `wait_booted` waits for the end of cloud-init."""
        if self.running:
            raise DropletError(f"{self.name} is already running; crash it first")
        self.topology.set_links(self.netns, up=True)
        self.boots += 1
        if self.boots == 1:
            for line in self._differences() + self.notes:
                self._say(line)
        try:
            self.machine.start()
        except NspawnError as error:
            raise DropletError(str(error)) from error
        self._say(f"boot {self.boots}: systemd-nspawn started, init pid {self.machine.init_pid}")

    def wait_booted(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Until cloud-init has finished every stage; its errors go into the boot lines."""
        try:
            result = self.machine.wait_cloud_init(timeout)
        except NspawnError as error:
            raise DropletError(f"{self.name} did not finish booting: {error}") from error
        done = time.monotonic() - self.machine.started_at
        target = self.machine.unit_entered("multi-user.target")
        self._say(
            f"multi-user.target after {target:.1f} s; cloud-init {result.status} after {done:.1f} s"
        )
        failures = [f"{stage}: {e}" for stage, errors in result.errors.items() for e in errors]
        for failure in failures:
            self._say(f"cloud-init error in {failure}")
        self._say(BOOTED + (f" with {len(failures)} failures" if failures else ""), prefix="")

    def _say(self, text: str, prefix: str = "lab: ") -> None:
        line = prefix + text
        self.boot_lines.append(BootLine(time.time(), line))
        self.echo(f"[{self.name}] {line}")

    def _differences(self) -> list[str]:
        versions = package_versions(self.machine.rootfs, ("systemd", "cloud-init", "nginx"))
        return [
            f"real boot: Debian {SUITE} under systemd-nspawn (systemd {versions['systemd']}, "
            f"cloud-init {versions['cloud-init']}, nginx {versions['nginx']}); a droplet "
            "runs Ubuntu 24.04 (systemd 255, cloud-init 24 or later, nginx 1.24)",
            "cloud-init reads the user-data and meta-data (instance id, hostname) from a "
            "NoCloud seed, not from DigitalOcean's datasource; its network config is off, "
            "the lab sets the addresses",
            "apt runs for real against the image's local repository: the user-data's packages "
            "were installed when the image was built (their daemons were not started then)",
            "the kernel is the host's: /proc/sys is read-only and cgroups have no controllers "
            "(MemoryMax= and CPUQuota= do nothing)",
            "the API, metadata service and reserved-IP routing are the lab's emulator; there "
            "is no machinectl (no systemd-machined on this host)",
        ]

    @property
    def running(self) -> bool:
        return self.machine.running

    @property
    def init_pid(self) -> int | None:
        return self.machine.init_pid if self.machine.running else None

    def crash(self) -> None:
        """Power cut: SIGKILL to the container's init. Its network namespace is replaced by
        a fresh one with its links down: powered off, it answers nothing, and the next boot
        finds no nft table, address or socket of this one, as after a power cycle."""
        self._power_cut()
        self.topology.add_droplet(self.links)
        self.topology.set_links(self.netns, up=False)

    def poweroff(self, timeout: float = 60.0) -> None:
        """A clean stop, as `machinectl poweroff` asks systemd for; the disk stays."""
        try:
            self.machine.poweroff(timeout)
        except NspawnError as error:
            raise DropletError(str(error)) from error
        self.topology.set_links(self.netns, up=False)

    def _power_cut(self) -> None:
        try:
            if self.machine.running:
                self.machine.crash()
        finally:
            self.topology.remove_droplet(self.netns)

    def destroy(self) -> None:
        try:
            self._power_cut()
        finally:
            self.machine.close()

    # -- looking inside --

    def path(self, inside: str) -> Path:
        """A path as the running droplet sees it (its /run included)."""
        init = self.init_pid
        if init is None:
            raise DropletError(f"{self.name} is not running")
        return Path(f"/proc/{init}/root") / inside.lstrip("/")

    def journal(self) -> str:
        """Every boot's journal: journalctl inside, or on the disk when the droplet is off.
        Each line starts with its time in epoch seconds (`--output=short-unix`)."""
        argv = ["journalctl", "--no-pager", "--output=short-unix"]
        if self.running:
            return self.machine.run(argv, timeout=60, check=False).stdout
        directories = sorted(self.root.glob("var/log/journal/*/"))
        if not directories:
            return ""
        result = subprocess.run(
            [*argv, *(f"--directory={d}" for d in directories[-1:])],
            capture_output=True, text=True, env=clean_env(), timeout=60, check=False,
        )  # fmt: skip
        return result.stdout

    def run(
        self, argv: Sequence[str], user: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """argv inside the droplet, as root or as `user` (with that user's group only)."""
        if not self.running:
            raise DropletError(f"{self.name} is not running")
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        return self.machine.run(argv, timeout=timeout, check=False)

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", *args])

    def pids(self, comm: str | None = None) -> list[int]:
        """Host pids of the droplet's processes (optionally those named `comm`)."""
        init = self.init_pid
        if init is None:
            return []
        mine = os.readlink(f"/proc/{init}/ns/pid")
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != mine:
                    continue
                name = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if comm is None or name == comm:
                found.append(int(entry))
        return found

    def kill(self, comm: str, sig: signal.Signals = signal.SIGKILL) -> list[int]:
        """Signal every process named `comm` in this droplet, by pid."""
        killed = []
        for pid in self.pids(comm):
            try:
                os.kill(pid, sig)
                killed.append(pid)
            except ProcessLookupError:
                continue
        return killed
