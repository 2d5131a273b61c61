"""A lab droplet that boots for real: the cached Debian image under systemd-nspawn
(lab/nspawn.py), with real systemd, journald and cloud-init running its user-data.

It offers what the stand-in (lab/droplet.py) offers the lab, so `Lab(real_boot=True)` swaps
one for the other. A crash kills the container's init, and with it every process, and
deletes the droplet's network namespace, so the next boot starts from a fresh kernel state
(no nft tables, addresses or sockets left over) on the disk the last boot left.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.droplet import BootLine, Droplet, DropletError, DropletSpec, Echo
from lab.droplet_init import BOOTED
from lab.nspawn import Machine, NspawnError, Seed, clean_env
from lab.rootfs import SUITE, package_versions
from lab.topology import Topology

BOOT_TIMEOUT = 300.0
"""Seconds until cloud-init is done: keepalived is built at boot, on two shared cores."""


class BootedDroplet(Droplet):
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
        super().__init__(spec, short, lab_dir=lab_dir, topology=topology, builds=[], echo=echo)
        seed = Seed(spec.name, str(spec.droplet_id), spec.user_data)
        self.machine = Machine(self.netns, rootfs, self.dir, self.netns, seed, files=files)
        self.root = self.machine.upper
        """The droplet's own changes to the image (the overlay's upper directory)."""
        self.notes = list(notes)

    # -- lifecycle --

    def create(self) -> None:
        """The droplet's network; its disk is laid at its first boot."""
        self.topology.add_droplet(self.links)

    def boot(self) -> None:
        if self.running:
            raise DropletError(f"{self.name} is already running; crash it first")
        if self.netns not in self.topology.created:
            self.topology.add_droplet(self.links)
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
        ]

    @property
    def running(self) -> bool:
        return self.machine.running

    @property
    def init_pid(self) -> int | None:
        return self.machine.init_pid if self.machine.running else None

    def crash(self) -> None:
        """Power cut: SIGKILL to the container's init; then its network goes too."""
        try:
            if self.machine.running:
                self.machine.crash()
        finally:
            self.topology.remove_droplet(self.netns)

    def destroy(self) -> None:
        try:
            self.crash()
        finally:
            self.machine.close()

    # -- looking inside --

    def path(self, inside: str) -> Path:
        init = self.init_pid
        if init is None:
            raise DropletError(f"{self.name} is not running")
        return Path(f"/proc/{init}/root") / inside.lstrip("/")

    def journal(self) -> str:
        """Every boot's journal: journalctl inside, or on the disk when the droplet is off."""
        argv = ["journalctl", "--no-pager", "--output=short-precise"]
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
