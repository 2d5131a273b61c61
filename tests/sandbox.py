"""Throwaway droplet sandboxes: a network namespace with a droplet's interfaces,
plus private mount, PID and UTS namespaces in which a staging tree lies over the
real filesystem.

The staging tree mirrors `/` (staging/etc/keepalived/keepalived.conf shows up at
/etc/keepalived/keepalived.conf). It is mounted as the writable upper layer of
overlays on the real directories, so files in it shadow or add to the host's,
writes inside the sandbox land in it, and the host itself never changes. Inside,
mounts below an overlaid directory (say /run/netns under /run) are hidden.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath

from lab.netns import ip

MAX_IFNAME = 15  # IFNAMSIZ - 1
# --kill-child ties the sandbox's init to its holder; --mount-proc shows only the sandbox's PIDs.
_UNSHARE = ["unshare", "--mount", "--propagation", "private", "--uts"]
_UNSHARE += ["--pid", "--fork", "--kill-child", "--mount-proc"]


class SandboxError(RuntimeError):
    """A namespace or mount could not be set up; the message says why and what to do."""


@dataclass(frozen=True)
class Interface:
    """One droplet interface: a veth whose peer end lives in another namespace."""

    name: str
    """Name inside the droplet, e.g. eth0."""
    address: str
    """CIDR inside the droplet, e.g. 198.51.100.11/24."""
    peer_name: str
    """Name of the other end, unique within the peer namespace."""
    peer_address: str | None = None
    """CIDR of the other end, if it needs one (a gateway, say)."""


@dataclass(frozen=True)
class Overlay:
    """The real directory `target` shows `upper` (a staging subtree) on top of itself."""

    target: Path
    upper: Path


@dataclass(frozen=True)
class Sandbox:
    """A running sandbox; `pid` is its init process as seen from the host."""

    namespace: str
    pid: int

    def argv(self, command: Sequence[str]) -> list[str]:
        """`command` wrapped to run inside the sandbox (for Popen by long-running callers)."""
        return [
            "nsenter",
            f"--target={self.pid}",
            "--mount",
            "--uts",
            "--net",
            "--pid",
            "--wdns=/",
            "--",
            *command,
        ]

    def run(
        self, command: Sequence[str], timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command), capture_output=True, text=True, timeout=timeout, check=False
        )


@contextmanager
def network_namespace(name: str) -> Iterator[str]:
    """A new, empty network namespace with loopback up; deleted on exit."""
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        ip("netns", "delete", name)


@contextmanager
def droplet_network(
    name: str, peer_namespace: str, interfaces: Sequence[Interface]
) -> Iterator[str]:
    """A network namespace holding `interfaces`, their peer ends in `peer_namespace`.

    On exit the veths are deleted before the namespace, so no peer end outlives it.
    """
    for interface in interfaces:
        if len(interface.name) > MAX_IFNAME or len(interface.peer_name) > MAX_IFNAME:
            raise SandboxError(
                f"interface names are at most {MAX_IFNAME} characters: {interface}; shorten them."
            )
    with network_namespace(name):
        created: list[str] = []
        try:
            for interface in interfaces:
                ip(
                    "link", "add", interface.name, "netns", name, "type", "veth",
                    "peer", "name", interface.peer_name, "netns", peer_namespace,
                )  # fmt: skip
                created.append(interface.name)
                ip("-n", name, "addr", "add", interface.address, "dev", interface.name)
                ip("-n", name, "link", "set", interface.name, "up")
                if interface.peer_address:
                    ip(
                        "-n",
                        peer_namespace,
                        "addr",
                        "add",
                        interface.peer_address,
                        "dev",
                        interface.peer_name,
                    )
                ip("-n", peer_namespace, "link", "set", interface.peer_name, "up")
            yield name
        finally:
            for interface_name in created:
                ip("-n", name, "link", "delete", interface_name, check=False)


def overlay_root(staging: Path) -> list[Overlay]:
    """The overlays that lay `staging` over `/`, each on the deepest existing real directory.

    Pure: it only reads the staging tree and checks which real paths exist.
    """
    staging = staging.resolve()
    points: set[PurePath] = set()
    orphans: list[str] = []

    def walk(rel: PurePath) -> None:
        for entry in sorted((staging / rel).iterdir()):
            real = Path("/", rel, entry.name)
            if entry.is_dir() and not entry.is_symlink() and real.is_dir():
                walk(rel / entry.name)
            elif rel == PurePath():
                orphans.append(entry.name)
            else:
                points.add(rel)

    walk(PurePath())
    if orphans:
        raise SandboxError(
            f"{staging} has top-level entries with no directory of that name on this machine: "
            f"{', '.join(orphans)}; put files only under existing top-level directories "
            "such as etc, usr, var or run."
        )
    tops = sorted(p for p in points if not any(q in p.parents for q in points))
    return [Overlay(Path("/", p), staging / p) for p in tops]


def mount_script(overlays: Sequence[Overlay], workroot: Path, hostname: str | None = None) -> str:
    """The shell script a sandbox's init runs: mount, name the host, report ready, wait."""
    lines = ["set -e"]
    for index, overlay in enumerate(overlays):
        work = workroot / str(index)
        for path in (overlay.target, overlay.upper, work):
            if any(c in str(path) for c in ",:\\"):
                raise SandboxError(
                    f"overlay paths may not contain ',', ':' or '\\': {path}; use a plainer path."
                )
        options = f"lowerdir={overlay.target},upperdir={overlay.upper},workdir={work}"
        lines.append(f"mkdir -p {shlex.quote(str(work))}")
        target = shlex.quote(str(overlay.target))
        lines.append(f"mount -t overlay ha-web-sandbox -o {shlex.quote(options)} {target}")
    if hostname:
        lines.append(f"printf %s {shlex.quote(hostname)} > /proc/sys/kernel/hostname")
    lines += ["echo ready", "exec sleep infinity"]
    return "\n".join(lines) + "\n"


@contextmanager
def sandbox(
    namespace: str, staging: Path | None = None, hostname: str | None = None
) -> Iterator[Sandbox]:
    """A sandbox in the existing network namespace `namespace`, with `staging` laid over `/`.

    Everything started inside it (via `Sandbox.argv`/`run`) dies with it on exit.
    """
    overlays = overlay_root(staging) if staging else []
    # Overlay work dirs must share the staging tree's filesystem but lie outside it.
    workroot = Path(
        tempfile.mkdtemp(prefix=".sandbox-work-", dir=staging.resolve().parent if staging else None)
    )
    holder: subprocess.Popen[str] | None = None
    init_pid: int | None = None
    try:
        script = mount_script(overlays, workroot, hostname)
        holder = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *_UNSHARE, "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stderr is not None
        if holder.stdout.readline() != "ready\n":
            holder.wait(timeout=10)
            raise SandboxError(
                f"the sandbox in network namespace {namespace} did not start "
                f"(exit {holder.returncode}): {holder.stderr.read().strip()}"
            )
        init_pid = _child_of(holder.pid)
        yield Sandbox(namespace, init_pid)
    finally:
        if holder is not None:
            _stop(holder, init_pid)
        shutil.rmtree(workroot)


def run_in_sandbox(
    namespace: str,
    command: Sequence[str],
    staging: Path | None = None,
    hostname: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run `command` once in a fresh sandbox; its exit status is the caller's to judge."""
    with sandbox(namespace, staging, hostname) as box:
        return box.run(command, timeout=timeout)


def add_system_users(staging: Path, names: Sequence[str]) -> None:
    """Write staging/etc/passwd and group: the host's, plus `names` as shell-less system users."""
    passwd = Path("/etc/passwd").read_text().splitlines()
    group = Path("/etc/group").read_text().splitlines()
    taken = {line.split(":")[2] for line in passwd + group if line.count(":") >= 3}
    free = (uid for uid in range(999, 99, -1) if str(uid) not in taken)
    existing = {line.split(":")[0] for line in passwd}
    for name in names:
        if name in existing:
            continue
        uid = next(free)
        passwd.append(f"{name}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin")
        group.append(f"{name}:x:{uid}:")
    etc = staging / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    for path, lines in ((etc / "passwd", passwd), (etc / "group", group)):
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o644)


def _child_of(pid: int) -> int:
    # /proc/PID/task/*/children is not compiled into every kernel; scan instead.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            return int(stat.parent.name)
    raise SandboxError(
        f"the sandbox's init (child of pid {pid}) exited as it started; "
        "run the sandbox's mount script by hand to see why."
    )


def _stop(holder: subprocess.Popen[str], init_pid: int | None) -> None:
    # Killing the PID namespace's init kills everything in it, and unshare exits once it is
    # reaped. While unshare lives, it has not reaped init, so init_pid still names init.
    if holder.poll() is None:
        if init_pid is None:
            holder.kill()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid, signal.SIGKILL)
    holder.wait(timeout=10)
    for stream in (holder.stdout, holder.stderr):
        if stream is not None:
            stream.close()
