"""Debian's keepalived source tarball, built with the droplets' own build script.

Debian's `keepalived_<version>.orig.tar.gz` is byte-identical to the release
tarball the droplets download (DESIGN decision 5), so the lab and the tests
run exactly the build a droplet runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.settings import DEFAULT_KEEPALIVED_VERSION, KNOWN_KEEPALIVED_SHA256

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "cloudinit" / "files" / "build-keepalived"
CACHE_DIR = REPO_ROOT / ".cache" / "keepalived"

APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
HA_WEB_SOURCE = APT_SOURCES_DIR / "ha-web-src.list"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
BUILD_STAMP = ".ha-web-build"


class KeepalivedSourceError(RuntimeError):
    """keepalived's source could not be fetched or built; the message says how to fix it."""


@dataclass(frozen=True)
class BuildRequest:
    """One `build-keepalived URL SHA256 VERSION` a droplet's runcmd runs."""

    url: str
    sha256: str
    version: str


def build_requests(user_data: Iterable[str]) -> list[BuildRequest]:
    """Every distinct keepalived build these `#cloud-config` documents run, in order."""
    found: list[BuildRequest] = []
    for text in user_data:
        document = yaml.safe_load(text) or {}
        for command in document.get("runcmd") or []:
            if (
                isinstance(command, list)
                and len(command) == 4
                and Path(str(command[0])).name == BUILD_SCRIPT.name
            ):
                request = BuildRequest(str(command[1]), str(command[2]), str(command[3]))
                if request not in found:
                    found.append(request)
    return found


def debian_version(version: str) -> str:
    """Debian's version of upstream `version`: epoch 1, first Debian revision."""
    return f"1:{version}-1"


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def mirror_from_deb822(text: str, codename: str) -> tuple[str, str] | None:
    """(URI, keyring) of the first enabled `deb` stanza serving `codename`."""
    for stanza in _deb822_stanzas(text):
        if (
            "deb" in stanza.get("types", "").split()
            and codename in stanza.get("suites", "").split()
            and stanza.get("enabled", "yes") != "no"
            and stanza.get("uris")
        ):
            return stanza["uris"].split()[0], _keyring(stanza.get("signed-by", ""))
    return None


def mirror_from_one_line(text: str, codename: str) -> tuple[str, str] | None:
    """(URI, keyring) of the first one-line `deb` entry serving `codename`."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[len("deb ") :].strip()
        options: dict[str, str] = {}
        if rest.startswith("["):
            opts, _, rest = rest[1:].partition("]")
            for option in opts.split():
                key, _, value = option.partition("=")
                options[key] = value
        fields = rest.split()
        if len(fields) >= 2 and fields[1] == codename:
            return fields[0], _keyring(options.get("signed-by", ""))
    return None


def debian_mirror() -> tuple[str, str]:
    """(URI, keyring) of the Debian mirror this machine's apt already uses."""
    codename = _os_release().get("VERSION_CODENAME", "")
    files = [
        APT_SOURCES,
        *sorted(APT_SOURCES_DIR.glob("*.list")),
        *sorted(APT_SOURCES_DIR.glob("*.sources")),
    ]
    for path in files:
        if path == HA_WEB_SOURCE or not path.is_file():
            continue
        parse = mirror_from_deb822 if path.suffix == ".sources" else mirror_from_one_line
        found = parse(path.read_text(), codename)
        if found:
            return found
    raise KeepalivedSourceError(
        f"no apt source serves this machine's release ({codename or 'unknown codename'}) "
        f"in {APT_SOURCES} or {APT_SOURCES_DIR}/; add a Debian mirror to apt's sources "
        "so keepalived's source can be fetched from it."
    )


def fetch_debian_tarball(version: str, dest: Path, sha256: str | None = None) -> Path:
    """Debian's orig tarball of keepalived `version`, downloaded into `dest` unless cached there.

    `sha256` defaults to the known sum of `version`; a cached tarball is reused only
    when it matches, and a fresh download that does not match is an error.
    """
    expected = sha256 or KNOWN_KEEPALIVED_SHA256.get(version)
    tarball = dest / f"keepalived_{version}.orig.tar.gz"
    if tarball.is_file():
        if expected and sha256_of(tarball) == expected:
            return tarball
        tarball.unlink()
    if os.geteuid() != 0:
        raise KeepalivedSourceError(
            "fetching keepalived's source adds an apt source and runs apt-get, which needs root; "
            f"run as root, or put keepalived_{version}.orig.tar.gz into {dest}."
        )
    dest.mkdir(parents=True, exist_ok=True)
    uri, keyring = debian_mirror()
    line = f"deb-src [signed-by={keyring}] {uri} sid main\n"
    if not HA_WEB_SOURCE.is_file() or HA_WEB_SOURCE.read_text() != line:
        HA_WEB_SOURCE.write_text(line)
    _run(
        [
            "apt-get",
            "update",
            f"-o=Dir::Etc::sourcelist={HA_WEB_SOURCE}",
            "-o=Dir::Etc::sourceparts=-",
            "-o=APT::Get::List-Cleanup=0",
        ],
        hint=f"check that {uri} is reachable (it is the mirror from this machine's apt sources).",
    )
    _run(
        [
            "apt-get",
            "source",
            "--download-only",
            "--tar-only",
            f"keepalived={debian_version(version)}",
        ],
        cwd=dest,
        hint=(
            f"Debian sid may no longer carry keepalived {debian_version(version)}; "
            f"put keepalived_{version}.orig.tar.gz into {dest} yourself."
        ),
    )
    if not tarball.is_file():
        raise KeepalivedSourceError(
            f"apt-get source succeeded but left no {tarball}; look into {dest}."
        )
    found = sha256_of(tarball)
    if expected and found != expected:
        raise KeepalivedSourceError(
            f"{tarball} has sha256 {found}, expected {expected}; "
            "Debian's tarball no longer matches the pinned release, so do not build it."
        )
    return tarball


def build_keepalived(tarball: Path, sha256: str, version: str, destdir: Path) -> Path:
    """Run the droplets' build script on `tarball` into `destdir`; the built sbin/keepalived.

    A previous build in `destdir` is reused when it came from the same tarball sum and
    the same build script.
    """
    binary = destdir / "usr" / "sbin" / "keepalived"
    stamp = f"{sha256} {sha256_of(BUILD_SCRIPT)}\n"
    if (destdir / BUILD_STAMP).is_file():
        if binary.is_file() and (destdir / BUILD_STAMP).read_text() == stamp:
            return binary
    elif destdir.exists() and any(destdir.iterdir()):
        raise KeepalivedSourceError(
            f"{destdir} is not empty and was not made by build_keepalived; "
            "pass a new or empty directory."
        )
    partial = destdir.with_name(destdir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    env = {key: value for key, value in os.environ.items() if key != "WORKDIR"}
    env["DESTDIR"] = str(partial)
    result = subprocess.run(
        [str(BUILD_SCRIPT), tarball.resolve().as_uri(), sha256, version],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise KeepalivedSourceError(
            f"{BUILD_SCRIPT.name} failed (exit {result.returncode}) on {tarball}:\n{tail}"
        )
    (partial / BUILD_STAMP).write_text(stamp)
    shutil.rmtree(destdir, ignore_errors=True)
    partial.rename(destdir)
    return binary


def ensure_keepalived(version: str = DEFAULT_KEEPALIVED_VERSION, sha256: str | None = None) -> Path:
    """keepalived built from Debian's tarball, cached under .cache/keepalived/<version>/."""
    expected = sha256 or KNOWN_KEEPALIVED_SHA256.get(version)
    if not expected:
        raise KeepalivedSourceError(
            f"no sha256 is known for keepalived {version}; pass its sha256 (--sha256)."
        )
    cache = CACHE_DIR / version
    tarball = fetch_debian_tarball(version, cache, expected)
    return build_keepalived(tarball, expected, version, cache / "root")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.keepalived_source",
        description="Build keepalived from Debian's tarball with the droplets' build script.",
    )
    parser.add_argument(
        "--version", default=DEFAULT_KEEPALIVED_VERSION, help="upstream keepalived version"
    )
    parser.add_argument(
        "--sha256", default=None, help="tarball sha256 (default: the known sum of --version)"
    )
    args = parser.parse_args(argv)
    try:
        print(ensure_keepalived(args.version, args.sha256))
    except KeepalivedSourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _run(argv: list[str], hint: str, cwd: Path | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KeepalivedSourceError(
            f"`{' '.join(argv)}` failed (exit {result.returncode}): {result.stderr.strip()}\n{hint}"
        )


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current = {}
        elif line[0] in " \t" and key in current:
            current[key] += " " + line.strip()
        else:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _keyring(signed_by: str) -> str:
    # An inline key block cannot go into a one-line entry, so fall back to Debian's keyring.
    return signed_by if signed_by.startswith("/") else DEBIAN_KEYRING


def _os_release() -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name] = value.strip().strip('"')
    return fields


if __name__ == "__main__":
    sys.exit(main())
