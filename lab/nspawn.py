"""Boot one droplet: a Debian root filesystem under systemd-nspawn with real systemd.

The droplet's disk is an overlay: the cached root filesystem (lab/rootfs.py) below, the
droplet's own upper directory above, so droplets share the image and never change it.
Its NoCloud seed (user-data and meta-data) is laid into the upper directory before boot,
and real cloud-init runs the user-data unmodified. It joins a network namespace the lab
made (lab/topology.py), so the lab's router, VPC bridge and client stay as they are.

This host is unusual, and each choice below is why it boots anyway:
- PID 1 is not systemd, so nothing can give nspawn a scope unit (`--keep-unit`), and
  there is no systemd-machined to register with (`--register=no`; so no `machinectl`).
- With `--keep-unit`, nspawn splits the cgroup it was started in into `supervisor` and
  `payload`. Started from the root cgroup, every container would share `/payload`, so each
  is first moved into its own cgroup (`ha-web-lab/<machine>`) in every hierarchy nspawn uses.
- Cgroups are v1 hybrid. SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 gives the container a pure
  cgroup v2 tree (from the host's v2 hierarchy, which has no controllers here), as Ubuntu
  24.04 runs. Unset, it would get the host's hybrid layout; systemd 252 boots either way.
- `--network-namespace-path` does not imply CAP_NET_ADMIN (only --private-network does),
  so it is asked for. /proc/sys stays read-only (nspawn's default), so sysctl fails inside.
- The overlay is mounted in a private mount namespace that only nspawn and the container
  live in (`unshare --mount --propagation private`): when the last of them exits, the
  kernel unmounts it, even if the lab itself was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

CGROUP_HOME = "ha-web-lab"
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SEED_DIR = "var/lib/cloud/seed/nocloud"
# Common to every nspawn run (a boot or a build step), and why:
NSPAWN_COMMON = (
    "--register=no",  # no systemd-machined on this host
    "--keep-unit",  # no systemd PID 1 on the host to make a scope unit
    "--link-journal=no",  # the journal stays in the container; read it with journalctl there
    "--timezone=off",  # the image keeps its own /etc/localtime (UTC, as a droplet)
    "--quiet",
)
# The container gets a pure cgroup v2 tree, as Ubuntu 24.04 has, though this host is hybrid.
BOOT_ENV = {"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
# A shell that moves itself into the given cgroup.procs files, then execs the rest.
_ENTER_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@"'
# Run inside `unshare --mount`: mount the droplet's overlay there, then exec nspawn.
_MOUNT_OVERLAY = 'mount -t overlay overlay -o "$1" "$2"; shift 2; exec "$@"'


class NspawnError(RuntimeError):
    """A container did not start, boot or stop; the message says what it saw and where to look."""


def clean_env() -> dict[str, str]:
    """What nspawn and commands inside a container get: never the lab's venv or SYSTEMD_*."""
    return {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8"}


def _cgroup_hierarchies() -> list[Path]:
    """The hierarchies nspawn places itself in: cgroup2, and v1's name=systemd."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        mount_point, rest = fields[4], fields[fields.index("-") + 1 :]
        fstype, options = rest[0], rest[2].split(",") if len(rest) > 2 else []
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options):
            found.append(Path(mount_point))
    return found


class CgroupHome:
    """One container's own cgroup in every hierarchy nspawn uses, removed after it exits."""

    def __init__(self, machine: str) -> None:
        self.dirs = [h / CGROUP_HOME / machine for h in _cgroup_hierarchies()]

    def create(self) -> list[str]:
        """Make the cgroups (after removing a stale empty one); return their cgroup.procs."""
        self.remove()
        for directory in self.dirs:
            directory.mkdir(parents=True, exist_ok=False)
        return [str(d / "cgroup.procs") for d in self.dirs]

    def remove(self) -> list[str]:
        """Remove the cgroups, deepest first; return any that still hold processes."""
        return [str(d) for d in self.dirs if d.exists() and not _remove_empty_dirs(d)]

    def launcher(self) -> list[str]:
        """argv prefix that starts the rest of the command inside this home."""
        return ["sh", "-c", _ENTER_CGROUPS, "sh", *self.create(), "--"]


def run_in_image(
    root: Path, script: str, log: Path, *, network: bool, timeout: float = 1800.0
) -> None:
    """Run a shell script in the image at `root` (not booted), as a build step.

    With `network`, the step shares the host's network (to reach the mirror) and a copy of
    its resolv.conf; without, the container has a private network of its own: no route out.
    """
    machine = f"ha-web-build-{os.getpid()}"
    home = CgroupHome(machine)
    argv = [
        *home.launcher(),
        "systemd-nspawn",
        f"--directory={root}",
        f"--machine={machine}",
        *NSPAWN_COMMON,
        "--pipe",  # no console: the step's output goes straight to the log
        "--as-pid2",  # a stub init reaps what dpkg's maintainer scripts leave behind
        "--setenv=DEBIAN_FRONTEND=noninteractive",
        "--resolv-conf=copy-host" if network else "--private-network",
        "--",
        "/bin/sh",
        "-ec",
        script,
    ]
    try:
        with log.open("a") as out:
            out.write(f"\n$ {shlex.join(argv)}\n")
            out.flush()
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                timeout=timeout,
                check=False,
            )
    finally:
        home.remove()
        _remove_propagation_dir(machine)
    if result.returncode != 0:
        raise NspawnError(
            f"a build step in {root} failed (exit {result.returncode}); see {log}:\n"
            + _tail(log, 15)
        )


PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")


def machine_dirs(prefix: str) -> set[str]:
    """What nspawn runs leave on the host for machines named `prefix*`: their cgroups and
    propagate directories (the lab removes both after each exit)."""
    homes = [h / CGROUP_HOME for h in _cgroup_hierarchies()] + [PROPAGATE_DIR]
    return {str(d) for home in homes if home.is_dir() for d in home.glob(f"{prefix}*")}


def remove_machine_dirs(prefix: str, grace: float = 10.0) -> list[str]:
    """Remove what `machine_dirs(prefix)` finds, for a lab whose process died before it could
    (`python -m lab down`). Cgroups get `grace` seconds to empty after their inits were
    killed; return those that still hold processes."""
    deadline = time.monotonic() + grace
    while True:
        busy = [d for d in sorted(machine_dirs(prefix)) if not _remove_empty_dirs(Path(d))]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.1)


def _remove_empty_dirs(directory: Path) -> bool:
    """rmdir a tree of directories, deepest first (cgroups can only go that way); False if
    one still holds something (a cgroup with processes)."""
    for sub in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir():
            with contextlib.suppress(OSError):
                sub.rmdir()
    try:
        directory.rmdir()
    except OSError:
        return False
    return True


def _remove_propagation_dir(machine: str) -> None:
    # nspawn makes this on the host's /run, which here is not a tmpfs, so it refuses to
    # remove it itself ("can't allow that") and would leave one per machine.
    with contextlib.suppress(OSError):
        (PROPAGATE_DIR / machine).rmdir()


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Seed:
    """What the NoCloud datasource gives the droplet, as DigitalOcean's metadata would."""

    hostname: str
    instance_id: str
    user_data: str

    def meta_data(self) -> str:
        return f"instance-id: {self.instance_id}\nlocal-hostname: {self.hostname}\n"


@dataclass(frozen=True)
class CloudInitResult:
    status: str
    """done, error, running or not run (cloud-init's own words)."""
    errors: dict[str, list[str]]
    """Per stage (init-local, init, modules-config, modules-final), the errors it reported."""
    output: str


class Machine:
    """One droplet booted with systemd-nspawn; a context manager that always cleans up.

    Its disk (the upper directory) outlives a poweroff or a crash, so `start` again is a
    reboot that finds what the last boot left, as a droplet's disk does; `close` deletes it.
    """

    def __init__(
        self,
        machine: str,
        rootfs: Path,
        workdir: Path,
        netns: str,
        seed: Seed,
        *,
        files: Mapping[str, bytes] | None = None,
    ) -> None:
        self.machine = machine
        self.rootfs = rootfs
        self.workdir = workdir
        self.netns = netns
        self.seed = seed
        self.files = dict(files or {})
        """Absolute path -> content, laid into the disk before the first boot: what the lab
        adapts in the image for this droplet (its CA in the trust store)."""
        self.upper = workdir / "upper"
        self.merged = workdir / "merged"
        self.console = workdir / "console.log"
        self.home = CgroupHome(machine)
        self.started_at = 0.0
        """time.monotonic() at launch: the container's CLOCK_MONOTONIC is the host's."""
        self._process: subprocess.Popen[bytes] | None = None
        self._init: int | None = None

    # -- lifecycle --

    def __enter__(self) -> Machine:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Lay the disk and the seed on the first boot, then launch nspawn; returns once the
        init is known."""
        if self.running:
            raise NspawnError(f"{self.machine} is already running; crash or power it off first")
        netns_path = Path("/run/netns", self.netns)
        if not netns_path.exists():
            raise NspawnError(f"no network namespace {self.netns}: create it first (Topology)")
        if not self.upper.exists():
            self._lay_disk()
        work = self.workdir / "work"
        options = f"lowerdir={self.rootfs},upperdir={self.upper},workdir={work}"
        argv = [
            *self.home.launcher(),
            "unshare",
            "--mount",
            "--propagation=private",
            "sh",
            "-ec",
            _MOUNT_OVERLAY,
            "sh",
            options,
            str(self.merged),
            "systemd-nspawn",
            f"--directory={self.merged}",
            f"--machine={self.machine}",
            *NSPAWN_COMMON,
            "--boot",
            f"--network-namespace-path={netns_path}",
            # Only --private-network implies it: nft, keepalived and ip need it in their netns.
            "--capability=CAP_NET_ADMIN",
            "--resolv-conf=off",  # the image's own; the lab's names come from the image
            "--console=read-only",  # the boot messages go to console.log; nothing reads input
        ]
        self.started_at = time.monotonic()
        with self.console.open("ab") as out:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**clean_env(), **BOOT_ENV}, start_new_session=True,
            )  # fmt: skip
        self._init = self._wait_for_init(deadline=time.monotonic() + 30)

    def _lay_disk(self) -> None:
        for name in ("work", "merged", "upper"):  # upper last: it marks a laid disk
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        for inside, content in self.files.items():
            target = self.upper / inside.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o644)
        seed = self.upper / SEED_DIR
        seed.mkdir(parents=True, exist_ok=True, mode=0o700)
        # user-data carries the failover token: root only, as cloud-init keeps its copy.
        for name, text in (
            ("user-data", self.seed.user_data),
            ("meta-data", self.seed.meta_data()),
        ):
            path = seed / name
            path.write_text(text)
            path.chmod(0o600)

    def _wait_for_init(self, deadline: float) -> int:
        process = self._process
        assert process is not None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise NspawnError(
                    f"{self.machine}: systemd-nspawn exited ({process.returncode}) before the "
                    f"container started; see {self.console}:\n{_tail(self.console, 15)}"
                )
            init = self._find_init()
            if init is not None:
                return init
            time.sleep(0.02)
        raise NspawnError(f"{self.machine}: no container init within 30 s; see {self.console}")

    def _find_init(self, execed: bool = True) -> int | None:
        """The container's PID 1: nspawn's child in a PID namespace of its own; with `execed`,
        only once it has exec'd systemd (before, its root may still be the host's, and
        nsenter would run the host's tools)."""
        if self._process is None:
            return None
        host_pid_ns = os.readlink("/proc/self/ns/pid")
        for child in _children(self._process.pid):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{child}/ns/pid") != host_pid_ns and (
                    not execed or Path(f"/proc/{child}/comm").read_text().strip() == "systemd"
                ):
                    return child
        return None

    @property
    def init_pid(self) -> int:
        if self._init is None:
            raise NspawnError(f"{self.machine} is not running")
        return self._init

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def poweroff(self, timeout: float = 60.0) -> int:
        """A clean stop: `systemctl poweroff` inside; returns nspawn's exit status."""
        self.run(["systemctl", "--no-block", "poweroff"])
        return self._wait_exit(timeout, f"did not power off within {timeout:.0f} s")

    def crash(self) -> None:
        """Power cut: kill the container's init, and with it every process in the droplet."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.init_pid, signal.SIGKILL)
        self._wait_exit(30.0, "nspawn did not exit after its container's init was killed")

    def _wait_exit(self, timeout: float, complaint: str) -> int:
        process = self._process
        assert process is not None
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise NspawnError(f"{self.machine} {complaint}; see {self.console}") from error
        self._release()
        return code

    def _release(self, grace: float = 5.0) -> None:
        """After nspawn exits: remove what it leaves on the host (its cgroups, its propagate
        directory). The kernel may still be reaping the killed container's processes, so
        busy cgroups get `grace` seconds to empty."""
        self._init = None
        deadline = time.monotonic() + grace
        while (busy := self.home.remove()) and time.monotonic() < deadline:
            time.sleep(0.05)
        _remove_propagation_dir(self.machine)
        if busy:
            raise NspawnError(f"{self.machine}: cgroups still hold processes: {', '.join(busy)}")

    def close(self) -> None:
        """Stop the container if it runs (a crash if a clean stop fails), then remove its
        cgroups, nspawn's leftover directory and the droplet's disk (workdir)."""
        process = self._process
        try:
            if process is not None and process.poll() is None:
                try:
                    self.poweroff(timeout=20.0)
                except (NspawnError, subprocess.SubprocessError, OSError):
                    self._kill(process)
            self._release()
        finally:
            # The overlay lived in nspawn's private mount namespace: it went with nspawn.
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.workdir)], check=False)

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        # The init first: killing only nspawn would leave the container running, orphaned.
        init = self._init or self._find_init(execed=False)
        if init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    # -- inside --

    def run(
        self, argv: Sequence[str], timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """argv inside the droplet (all its namespaces and its root), as root."""
        command = ["nsenter", f"--target={self.init_pid}", "--all", "--", *argv]
        result = subprocess.run(
            command, capture_output=True, text=True, env=clean_env(), timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise NspawnError(
                f"{self.machine}: `{shlex.join(argv)}` failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        return result

    def wait_started(self, timeout: float) -> str:
        """Wait until systemd's startup jobs are done; return its state (running, degraded)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NspawnError(
                    f"{self.machine}: systemd did not finish starting in {timeout:.0f} s; "
                    f"see {self.console}"
                )
            try:
                # --wait blocks until startup is over; before systemd listens it fails at once.
                state = self.run(
                    ["systemctl", "is-system-running", "--wait"], timeout=left, check=False
                ).stdout.strip()
            except subprocess.TimeoutExpired:
                continue
            if state in ("running", "degraded"):
                return state
            if not self.running:
                raise NspawnError(f"{self.machine} stopped while booting; see {self.console}")
            time.sleep(0.05)

    def wait_cloud_init(self, timeout: float) -> CloudInitResult:
        """Wait until cloud-init has finished every stage (or failed); what it reported."""
        try:
            self.run(["cloud-init", "status", "--wait"], timeout=timeout, check=False)
        except subprocess.TimeoutExpired as error:
            raise NspawnError(
                f"{self.machine}: cloud-init did not finish in {timeout:.0f} s; its output:\n"
                + self.read("/var/log/cloud-init-output.log")[-3000:]
            ) from error
        # Exits 1 when cloud-init reported errors; the JSON says which.
        status = json.loads(self.run(["cloud-init", "status", "--format=json"], check=False).stdout)
        stages = json.loads(self.read("/run/cloud-init/status.json"))["v1"]
        errors = {
            stage: [str(e) for e in detail.get("errors") or []]
            for stage, detail in stages.items()
            if isinstance(detail, dict) and "errors" in detail
        }
        return CloudInitResult(
            str(status.get("status")), errors, self.read("/var/log/cloud-init-output.log")
        )

    def read(self, path: str) -> str:
        """A file of the droplet's, as root inside sees it."""
        return Path(f"/proc/{self.init_pid}/root", path.lstrip("/")).read_text(errors="replace")

    def journal(self, *args: str) -> str:
        """The droplet's journal since this boot (journalctl inside, so journald's own view)."""
        return self.run(["journalctl", "--boot", "--no-pager", *args], timeout=60).stdout

    def since_start(self, monotonic_usec: int) -> float:
        """Seconds from launch to a container timestamp (CLOCK_MONOTONIC is shared)."""
        return monotonic_usec / 1e6 - self.started_at

    def unit_entered(self, unit: str) -> float:
        """Seconds from launch until `unit` became active (0 if it never did)."""
        value = self.run(
            ["systemctl", "show", "--property=ActiveEnterTimestampMonotonic", "--value", unit]
        ).stdout.strip()
        return self.since_start(int(value)) if value and value != "0" else 0.0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]
