"""The droplets' keepalived build script, run here on Debian's identical tarball."""

import hashlib
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from components.settings import DEFAULT_KEEPALIVED_VERSION, KNOWN_KEEPALIVED_SHA256
from lab.keepalived_source import (
    BUILD_SCRIPT,
    CACHE_DIR,
    KeepalivedSourceError,
    fetch_debian_tarball,
    mirror_from_deb822,
    mirror_from_one_line,
)

VERSION = DEFAULT_KEEPALIVED_VERSION
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def _fake_release(tmp_path: Path, top: str = f"keepalived-{VERSION}") -> tuple[Path, str]:
    """A tiny tarball whose configure and Makefile record what the script asked of them."""
    src = tmp_path / "src" / top
    src.mkdir(parents=True)
    configure = src / "configure"
    configure.write_text('#!/bin/sh\necho "$@" > configured-with\n')
    configure.chmod(0o755)
    (src / "Makefile").write_text(
        "all:\n\ttouch built\n"
        "install:\n\tmkdir -p $(DESTDIR)/usr/sbin\n"
        "\tcp configured-with $(DESTDIR)/usr/sbin/keepalived\n"
    )
    tarball = tmp_path / "release.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(src, arcname=top)
    return tarball, hashlib.sha256(tarball.read_bytes()).hexdigest()


def _build(tarball: Path, sha256: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    for name in ("dest", "work"):
        (tmp_path / name).mkdir(exist_ok=True)
    env = {**os.environ, "DESTDIR": str(tmp_path / "dest"), "WORKDIR": str(tmp_path / "work")}
    return subprocess.run(
        [str(BUILD_SCRIPT), tarball.as_uri(), sha256, VERSION],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_build_script_passes_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_build_script_configures_for_systemd_and_installs_into_destdir(tmp_path: Path) -> None:
    tarball, sha256 = _fake_release(tmp_path)

    result = _build(tarball, sha256, tmp_path)

    assert result.returncode == 0, result.stderr
    installed = tmp_path / "dest" / "usr" / "sbin" / "keepalived"
    assert installed.read_text().split() == [
        "--prefix=/usr",
        "--sysconfdir=/etc",
        "--with-init=systemd",
    ]


def test_wrong_sha256_aborts_before_unpacking_with_a_clear_message(tmp_path: Path) -> None:
    tarball, found = _fake_release(tmp_path)
    wrong = "0" * 64

    result = _build(tarball, wrong, tmp_path)

    assert result.returncode != 0
    assert f"expected: {wrong}" in result.stderr
    assert f"found:    {found}" in result.stderr
    assert "ha-web:keepalivedSha256" in result.stderr
    assert list((tmp_path / "dest").iterdir()) == []
    assert list((tmp_path / "work").iterdir()) == []


def test_tarball_not_unpacking_into_keepalived_version_is_refused(tmp_path: Path) -> None:
    tarball, sha256 = _fake_release(tmp_path, top="keepalived-9.9.9")

    result = _build(tarball, sha256, tmp_path)

    assert result.returncode != 0
    assert f"keepalived-{VERSION}/" in result.stderr
    assert list((tmp_path / "dest").iterdir()) == []
    assert not (tmp_path / "work" / "keepalived-9.9.9").exists()


def test_debian_mirror_is_read_from_a_deb822_sources_file() -> None:
    text = (
        "Types: deb\n# snapshot comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\nSigned-By: /k/debian.gpg\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )

    assert mirror_from_deb822(text, "bookworm") == ("http://mirror.example/debian", "/k/debian.gpg")
    assert mirror_from_deb822(text, "trixie") is None


def test_debian_mirror_is_read_from_a_one_line_sources_list() -> None:
    text = (
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64] http://mirror.example/debian bookworm main contrib  # main mirror\n"
    )

    assert mirror_from_one_line(text, "bookworm") == ("http://mirror.example/debian", KEYRING)


@pytest.mark.lab
def test_debian_tarball_builds_a_keepalived_that_reports_its_version(
    keepalived_binary: Path,
) -> None:
    result = subprocess.run(
        [str(keepalived_binary), "--version"], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0
    assert f"Keepalived v{VERSION} " in result.stdout + result.stderr


@pytest.mark.lab
def test_build_installs_the_systemd_unit_in_systemds_unit_dir_under_destdir(
    keepalived_binary: Path,
) -> None:
    # Debian bookworm says /lib/systemd/system, Ubuntu 24.04 /usr/lib/systemd/system: one
    # directory on a merged-/usr system.
    root = keepalived_binary.parents[2]
    unit_dir = subprocess.run(
        ["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    unit = root / unit_dir.lstrip("/") / "keepalived.service"

    assert "ExecStart=/usr/sbin/keepalived " in unit.read_text()


@pytest.mark.lab
def test_fetched_debian_tarball_has_the_pinned_sha256(keepalived_binary: Path) -> None:
    tarball = fetch_debian_tarball(VERSION, CACHE_DIR / VERSION)

    assert hashlib.sha256(tarball.read_bytes()).hexdigest() == KNOWN_KEEPALIVED_SHA256[VERSION]


@pytest.mark.lab
def test_fetching_a_version_debian_does_not_have_raises(tmp_path: Path) -> None:
    with pytest.raises(KeepalivedSourceError, match=r"keepalived=1:0\.0\.1-1"):
        fetch_debian_tarball("0.0.1", tmp_path)
