"""The droplets' root filesystem: Debian 12 made by debootstrap, built once and cached.

A droplet boots it under systemd-nspawn (lab/nspawn.py) and real cloud-init runs its
user-data. Everything that user-data installs is installed here first, so a boot needs no
mirror. The product targets Ubuntu 24.04; where Debian 12 differs, this image adapts and
the user-data stays as Pulumi renders it.

How installing works offline: every .deb the build fetched is kept in a local apt
repository inside the image (LOCAL_REPO), and the image's only apt source is that
repository. cloud-init's `package_update` then runs a real `apt-get update` against it, and
its `packages` step a real `apt-get install`, which finds every package installed at the
newest version it knows and does nothing. A package the user-data could ask for but the
image leaves out (keepalived, for `keepalivedSource: package`) is in the repository too,
so that install works offline as well.

The cache is keyed by the package lists, the suite and BUILDER_VERSION, lives outside the
repo (CACHE), and is built in a temporary directory renamed into place when complete, so a
half-built image is never used. A lock lets parallel test runs share one build.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudinit.boot import BASE_PACKAGES, BUILD_PACKAGES
from lab.nspawn import NspawnError, clean_env, run_in_image

Echo = Callable[[str], None]

SUITE = "bookworm"
BUILDER_VERSION = 1
"""Bump when the build below changes in a way the package lists do not show."""
CACHE = Path(os.environ.get("HA_WEB_LAB_CACHE", "/var/cache/ha-web-lab"))
MARKER = ".ha-web-lab-rootfs.json"
LOCAL_REPO = "/var/lib/ha-web-lab/apt"
SOURCES_FILES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))

# What the issue found boots under nspawn here; debootstrap resolves their dependencies.
DEBOOTSTRAP_INCLUDE = ("systemd", "systemd-sysv", "dbus", "iproute2")
# What a cloud image has and minbase lacks. Installed with apt in the container, not by
# debootstrap, because their maintainer scripts start daemons (sshd) that a chroot would
# start on the host.
IMAGE_PACKAGES = (
    "cloud-init",
    "openssh-server",  # cloud-init's ssh module makes host keys; a droplet runs sshd
    "sudo",  # the image's default user gets a sudoers entry
    "ca-certificates",
    "netbase",  # /etc/services and /etc/protocols, which nft and curl read
    "procps",
    "locales",  # see _install_script
)
USER_DATA_PACKAGES = (*BASE_PACKAGES, *BUILD_PACKAGES)
DOWNLOAD_ONLY = ("keepalived",)
"""In the local repository but not installed: the user-data installs it only for
`keepalivedSource: package`, and an installed package would shadow the tarball build."""
# cloud-init's own apt-get options (cloudinit/distros/debian.py, APT_GET_COMMAND), so the
# build installs exactly what the droplet's `packages` step would: Recommends included.
APT_GET = (
    "apt-get --option=Dpkg::Options::=--force-confold --option=Dpkg::options::=--force-unsafe-io"
    " --assume-yes --quiet"
)
LAB_CLOUD_CFG = """\
# ha-web lab: the seed in /var/lib/cloud/seed/nocloud is this droplet's metadata.
datasource_list: [ NoCloud ]
# The lab's namespace already has the droplet's addresses, as DigitalOcean's network
# config would set them; a DHCP fallback config would only fight them.
network: {config: disabled}
"""


class RootfsError(RuntimeError):
    """The root filesystem could not be built; the message says what failed and where."""


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    components: tuple[str, ...]

    def line(self) -> str:
        return f"deb {self.uri} {self.suite} {' '.join(self.components)}"


def host_sources(suite: str = SUITE) -> list[AptSource]:
    """The `deb` sources this machine's apt uses for `suite` and its -updates/-security."""
    found: list[AptSource] = []
    for location in SOURCES_FILES:
        files = sorted(location.iterdir()) if location.is_dir() else [location]
        for path in files:
            if path.suffix == ".list" or path == SOURCES_FILES[0]:
                found += _one_line_sources(path)
            elif path.suffix == ".sources":
                found += _deb822_sources(path)
    family = {suite, f"{suite}-updates", f"{suite}-security"}
    return [s for s in found if s.suite in family and "main" in s.components]


def _one_line_sources(path: Path) -> Iterator[AptSource]:
    if not path.is_file():
        return
    for raw in path.read_text().splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        if len(words) > 1 and words[1].startswith("["):
            while words and not words[1].endswith("]"):
                del words[1]
            del words[1]
        if len(words) >= 4:
            yield AptSource(words[1], words[2], tuple(words[3:]))


def _deb822_sources(path: Path) -> Iterator[AptSource]:
    for stanza in path.read_text().split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield AptSource(uri, suite, tuple(fields.get("components", "").split()))


def mirror(sources: list[AptSource], suite: str = SUITE) -> str:
    """The mirror debootstrap uses: HA_WEB_LAB_MIRROR, else the host's source for `suite`."""
    chosen = os.environ.get("HA_WEB_LAB_MIRROR") or next(
        (s.uri for s in sources if s.suite == suite), None
    )
    if not chosen:
        raise RootfsError(
            f"this machine's apt has no `deb` source for Debian {suite} (main) in "
            "/etc/apt/sources.list or /etc/apt/sources.list.d/; add one, or set "
            "HA_WEB_LAB_MIRROR to a Debian mirror URL."
        )
    return chosen


def cache_key() -> str:
    wanted = {
        "suite": SUITE,
        "builder": BUILDER_VERSION,
        "debootstrap": DEBOOTSTRAP_INCLUDE,
        "image": IMAGE_PACKAGES,
        "user_data": USER_DATA_PACKAGES,
        "download_only": DOWNLOAD_ONLY,
    }
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16]


def cached_path() -> Path:
    return CACHE / f"rootfs-{cache_key()}"


def ensure_rootfs(echo: Echo = print) -> Path:
    """The cached root filesystem; built first if it is missing (about 80 s here)."""
    final = cached_path()
    if (final / MARKER).is_file():
        return _cached(final, echo)
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "rootfs.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / MARKER).is_file():  # another process built it while we waited
            return _cached(final, echo)
        return _build(final, echo)


def _cached(final: Path, echo: Echo) -> Path:
    built = json.loads((final / MARKER).read_text())
    echo(f"rootfs: Debian {built['suite']} image cached at {final} (built in {built['seconds']} s)")
    return final


def _build(final: Path, echo: Echo) -> Path:
    sources = host_sources()
    url = mirror(sources)
    log = CACHE / f"{final.name}.log"
    log.write_text("")
    # An interrupted build, or an image without its marker: never used; we hold the lock.
    for stale in [*CACHE.glob(".build-*"), final]:
        _remove_tree(stale)
    temp = CACHE / f".build-{final.name}-{os.getpid()}"
    started = time.monotonic()
    echo(
        f"rootfs: building Debian {SUITE} for the lab's droplets into {final} "
        f"(first time only; mirror {url}; log {log})"
    )
    try:
        _step(echo, started, "debootstrap (minbase)")
        _debootstrap(temp, url, log)
        _step(echo, started, f"installing {len(IMAGE_PACKAGES + USER_DATA_PACKAGES)} packages")
        run_in_image(temp, _install_script(sources), log, network=True)
        _step(echo, started, "making the local apt repository")
        run_in_image(temp, _local_repo_script(), log, network=False)
        _step(echo, started, "checking that apt installs the user-data's packages offline")
        run_in_image(temp, _offline_check_script(), log, network=False)
        _finish(temp)
        seconds = time.monotonic() - started
        (temp / MARKER).write_text(
            json.dumps(
                {"suite": SUITE, "mirror": url, "key": cache_key(), "seconds": round(seconds)},
                indent=2,
            )
        )
        temp.rename(final)
    except (NspawnError, RootfsError, OSError, subprocess.SubprocessError):
        _remove_tree(temp)
        raise
    echo(f"rootfs: built in {seconds:.0f} s ({_size_mb(final)} MB) at {final}")
    return final


def _step(echo: Echo, started: float, what: str) -> None:
    echo(f"rootfs: [{time.monotonic() - started:5.0f} s] {what}...")


def _debootstrap(target: Path, url: str, log: Path) -> None:
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(DEBOOTSTRAP_INCLUDE)}",
        SUITE,
        str(target),
        url,
    ]
    if shutil.which("debootstrap", path=clean_env()["PATH"]) is None:
        raise RootfsError("debootstrap is not installed: run `make system-packages`")
    with log.open("a") as out:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        result = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, env=clean_env(), timeout=1800, check=False
        )
    if result.returncode != 0:
        raise RootfsError(f"debootstrap failed (exit {result.returncode}); see {log}")


def _install_script(sources: list[AptSource]) -> str:
    lines = "\n".join(s.line() for s in sources)
    return f"""
# No maintainer script may start a daemon in the build container.
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
printf '%s\\n' {shlex.quote(lines)} > /etc/apt/sources.list
apt-get update
{APT_GET} dist-upgrade
{APT_GET} install {shlex.join(IMAGE_PACKAGES)}
# cloud-init's locale module sets its default, en_US.UTF-8, with `locale-gen en_US.UTF-8`:
# Ubuntu's locale-gen makes it, Debian's ignores the argument, and update-locale then fails.
echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen
locale-gen
{APT_GET} install {shlex.join(USER_DATA_PACKAGES)}
{APT_GET} install --download-only {shlex.join(DOWNLOAD_ONLY)}
"""


def _local_repo_script() -> str:
    repo = shlex.quote(LOCAL_REPO)
    return f"""
mkdir -p {repo}
mv /var/cache/apt/archives/*.deb {repo}/
cd {repo}
dpkg-scanpackages --multiversion . > Packages
echo 'deb [trusted=yes] file:{LOCAL_REPO} ./' > /etc/apt/sources.list
rm -rf /var/lib/apt/lists/*
rm -f /usr/sbin/policy-rc.d
"""


def _offline_check_script() -> str:
    every = shlex.join(USER_DATA_PACKAGES)
    return f"""
apt-get update
{APT_GET} install --simulate {every} > /tmp/simulated
cat /tmp/simulated
grep -q '^0 upgraded, 0 newly installed' /tmp/simulated || {{
    echo 'rootfs: installing the user-data packages would change the image' >&2; exit 1; }}
{APT_GET} install --simulate {shlex.join(DOWNLOAD_ONLY)}
rm -f /tmp/simulated
"""


def _finish(root: Path) -> None:
    """What makes one image many droplets: no identity of the build host or of a machine."""
    (root / "etc/cloud/cloud.cfg.d/90-ha-web-lab.cfg").write_text(LAB_CLOUD_CFG)
    # Empty, as in a cloud image: systemd gives each boot the container's own id; D-Bus
    # reads the same one, as on Debian's cloud images.
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    # No name server in the lab; nspawn copied the host's for the build.
    resolv = root / "etc/resolv.conf"
    resolv.write_text("# ha-web lab: no name server\n")
    resolv.chmod(0o644)
    # cloud-init makes each droplet its own host keys.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()


def package_versions(root: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Upstream versions of installed packages in the image at `root` ("?" if absent)."""
    found = dict.fromkeys(names, "?")
    status = (root / "var/lib/dpkg/status").read_text(errors="replace")
    for stanza in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        name = fields.get("Package", "")
        if name in found and fields.get("Status", "").endswith(" installed"):
            version = fields.get("Version", "?").split(":", 1)[-1]
            found[name] = version.rsplit("-", 1)[0]
    return found


def _size_mb(root: Path) -> int:
    result = subprocess.run(["du", "-sm", str(root)], capture_output=True, text=True, check=False)
    return int(result.stdout.split()[0]) if result.returncode == 0 else 0


def _remove_tree(path: Path) -> None:
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def main() -> int:
    try:
        ensure_rootfs()
    except (RootfsError, NspawnError) as error:
        print(f"rootfs: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
