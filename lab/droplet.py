"""One lab droplet, seen from the host: its disk, its namespaces, boot, crash and commands.

Its disk is a staging tree laid over /etc, /usr, /var, /tmp, /opt and /srv by overlays
(sandbox.py), so cloud-init's files land at their real paths and the host never changes.
/run and /dev are fresh tmpfs mounts on each boot (droplet_init.py); /var/lib and the
rest of the disk survive a crash, as a reboot keeps them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from lab.cloud_config import KeepalivedBuild
from lab.droplet_init import BOOTED
from lab.sandbox import Sandbox, sandbox
from lab.topology import DropletLinks, Topology

REPO = Path(__file__).resolve().parent.parent
OVERLAID = ("etc", "usr", "var", "tmp", "opt", "srv")
MARKER = ".ha-web-lab"
# Directories a droplet must not inherit from the host: its own cloud-init state, units, configs.
OPAQUE = (
    "var/lib/cloud",
    "var/lib/ha-web",
    "etc/systemd/system",
    "etc/keepalived",
    "etc/ha-web",
    "etc/nginx",
)

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
        builds: Sequence[KeepalivedBuild],
        echo: Echo,
    ) -> None:
        self.spec = spec
        self.short = short
        self.topology = topology
        self.builds = list(builds)
        self.echo = echo
        self.netns = f"{topology.prefix}-{short}"
        self.dir = lab_dir / short
        self.root = self.dir / "root"
        self.boot_lines: list[BootLine] = []
        self.boots = 0
        self.box: Sandbox | None = None
        self._stack: ExitStack | None = None
        self._process: subprocess.Popen[str] | None = None
        self._booted = threading.Event()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def links(self) -> DropletLinks:
        return DropletLinks(self.netns, self.short, self.spec.public_ip, self.spec.private_ip)

    @property
    def instance_id(self) -> str:
        return str(self.spec.droplet_id)

    # -- lifecycle --

    def create(self) -> None:
        """The droplet's network and a fresh disk holding its user-data, as DigitalOcean's."""
        self.topology.add_droplet(self.links)
        for top in OVERLAID:
            (self.root / top).mkdir(parents=True, exist_ok=True)
            (self.root / top / MARKER).write_text("lab droplet disk\n")
        for relative in OPAQUE:
            path = self.root / relative
            path.mkdir(parents=True, exist_ok=True)
            os.setxattr(path, "trusted.overlay.opaque", b"y")
        # The nginx package's files, as installing it would have left them.
        shutil.copytree("/etc/nginx", self.root / "etc/nginx", symlinks=True, dirs_exist_ok=True)
        instance = self.root / "var/lib/cloud/instances" / self.instance_id
        instance.mkdir(parents=True, mode=0o700)
        user_data = instance / "user-data.txt"
        user_data.write_text(self.spec.user_data, encoding="utf-8")
        user_data.chmod(0o600)

    def boot(self) -> None:
        """Power on: start the namespaces and the boot; `wait_booted` waits for its end."""
        if self.running:
            raise DropletError(f"{self.name} is already running; crash it first")
        if self.boots:
            self._clear_tmp()
        self.boots += 1
        self._booted.clear()
        self.topology.set_links(self.netns, up=True)
        self._stack = ExitStack()
        self.box = self._stack.enter_context(sandbox(self.netns, self.root, self.name))
        argv = [sys.executable, "-m", "lab.droplet_init", "--instance-id", self.instance_id]
        for build in self.builds:
            argv += ["--keepalived", build.version, build.sha256, str(build.root)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
        self._process = subprocess.Popen(
            self.box.argv(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read_boot, args=(self._process,), daemon=True).start()

    def wait_booted(self, timeout: float = 90.0) -> None:
        if not self._booted.wait(timeout):
            tail = "\n".join(line.text for line in self.boot_lines[-15:])
            raise DropletError(
                f"{self.name} did not finish booting in {timeout:.0f} s. Last boot lines:\n{tail}\n"
                f"Its journal: {self.root}/var/log/lab-journal.log"
            )

    def _read_boot(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for raw in process.stdout:
                line = raw.rstrip("\n")
                self.boot_lines.append(BootLine(time.time(), line))
                self.echo(f"[{self.name}] {line}")
                if line.startswith(BOOTED):
                    self._booted.set()

    @property
    def running(self) -> bool:
        return self.box is not None

    @property
    def init_pid(self) -> int | None:
        return self.box.pid if self.box else None

    def crash(self) -> None:
        """Everything in the droplet dies at once (its PID namespace's init is killed)."""
        self.topology.set_links(self.netns, up=False)
        pid_ns = os.readlink(f"/proc/{self.box.pid}/ns/pid") if self.box else None
        if self._stack is not None:
            self._stack.close()
        if self._process is not None:
            self._process.wait(timeout=10)
        self._stack = self.box = self._process = None
        # The kernel ends a dead namespace's processes asynchronously: wait until none is left.
        deadline = time.monotonic() + 10
        while pid_ns and _in_pid_namespace(pid_ns) and time.monotonic() < deadline:
            time.sleep(0.05)

    def destroy(self) -> None:
        if self.running:
            self.crash()
        self.topology.remove_droplet(self.netns)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _clear_tmp(self) -> None:
        for entry in (self.root / "tmp").iterdir():
            if entry.name != MARKER:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    # -- looking inside --

    def path(self, inside: str) -> Path:
        """A path as the running droplet sees it (its /run included)."""
        if self.box is None:
            raise DropletError(f"{self.name} is not running")
        return Path(f"/proc/{self.box.pid}/root") / inside.lstrip("/")

    def journal(self) -> str:
        path = self.root / "var/log/lab-journal.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def run(
        self, argv: Sequence[str], user: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """argv inside the droplet, as root or as `user` (with that user's group only)."""
        if self.box is None:
            raise DropletError(f"{self.name} is not running")
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        return self.box.run(list(argv), timeout=timeout)

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "lab.systemctl", *args])

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


def _in_pid_namespace(pid_ns: str) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == pid_ns:
                    return True
            except OSError:
                continue
    return False
