"""What a real lab droplet downloads at boot: keepalived's tarball, from the emulator, over
https signed by the lab's own CA, at the URL the lab renders into keepalivedUrl."""

from __future__ import annotations

import hashlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.settings import KNOWN_KEEPALIVED_SHA256
from lab.downloads import DOWNLOADS_IP, serve_keepalived_tarballs
from lab.emulator import Emulator, EmulatorServer, Fault
from lab.keepalived_source import BuildRequest, build_requests
from lab.lab_ca import BUNDLE, LOCAL_CERT, LabCa, make_ca
from lab.spec import KEEPALIVED_URL, from_stack

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every byte value: served as is, not as text
PATH = "/software/keepalived-9.9.9.tar.gz"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LabCa:
    return make_ca(tmp_path_factory.mktemp("lab") / "ca", "127.0.0.1")


@pytest.fixture
def server(ca: LabCa, tmp_path: Path) -> Iterator[tuple[Emulator, str]]:
    tarball = tmp_path / "keepalived.tar.gz"
    tarball.write_bytes(PAYLOAD)
    emulator = Emulator(token="dop_v1_test")
    emulator.serve_file(PATH, tarball)
    with EmulatorServer(emulator, tls=ca.server_context()) as running:
        yield emulator, running.url


def _curl(url: str, *options: str) -> subprocess.CompletedProcess[bytes]:
    # The droplet's build script downloads with curl; so does this test.
    return subprocess.run(
        ["curl", "--fail", "--silent", "--show-error", "--max-time", "10", *options, url],
        capture_output=True,
        check=False,
        timeout=30,
    )


def test_the_emulator_serves_a_file_over_https_that_the_lab_ca_verifies(
    server: tuple[Emulator, str], ca: LabCa
) -> None:
    _, url = server
    assert url.startswith("https://127.0.0.1:")
    got = _curl(url + PATH, "--cacert", str(ca.certificate))
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(got.stdout).hexdigest() == hashlib.sha256(PAYLOAD).hexdigest()


def test_a_client_without_the_lab_ca_refuses_the_emulators_certificate(
    server: tuple[Emulator, str], tmp_path: Path
) -> None:
    _, url = server
    other = make_ca(tmp_path / "other", "127.0.0.1")
    got = _curl(url + PATH, "--cacert", str(other.certificate))
    assert got.returncode == 60, got.stderr  # curl: peer certificate cannot be authenticated


def test_downloads_are_not_the_api_no_token_and_no_fault_touches_them(
    server: tuple[Emulator, str], ca: LabCa
) -> None:
    emulator, url = server
    emulator.add_fault(Fault.server_error(times=None))
    got = _curl(url + PATH, "--cacert", str(ca.certificate))
    assert got.returncode == 0 and got.stdout == PAYLOAD, got.stderr
    missing = _curl(url + "/software/other.tar.gz", "--cacert", str(ca.certificate))
    assert missing.returncode == 22  # the fault answers everything else: HTTP 500


def test_a_client_that_never_says_hello_holds_up_no_other_download(
    server: tuple[Emulator, str], ca: LabCa
) -> None:
    _, url = server
    host, port = url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=5):
        # Well under TLS_HANDSHAKE_TIMEOUT: the silent client waits in its own thread.
        got = _curl(url + PATH, "--cacert", str(ca.certificate), "--max-time", "3")
    assert got.returncode == 0, got.stderr


def test_trust_files_add_the_lab_ca_to_the_images_bundle(ca: LabCa, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / BUNDLE).parent.mkdir(parents=True)
    (rootfs / BUNDLE).write_bytes(b"-----BEGIN CERTIFICATE-----\nimage\n-----END CERTIFICATE-----")
    files = ca.trust_files(rootfs)
    pem = ca.certificate.read_bytes()
    assert files[f"/{LOCAL_CERT}"] == pem
    assert files[f"/{BUNDLE}"] == (rootfs / BUNDLE).read_bytes() + b"\n" + pem


def test_the_lab_points_keepalived_url_at_the_emulator_for_the_stacks_version() -> None:
    default = build_requests(d.user_data for d in from_stack("dev").droplets)
    assert default == [
        BuildRequest(
            KEEPALIVED_URL.format(version="2.3.4"), KNOWN_KEEPALIVED_SHA256["2.3.4"], "2.3.4"
        )
    ]
    assert default[0].url == f"https://{DOWNLOADS_IP}/software/keepalived-2.3.4.tar.gz"
    newer = build_requests(
        d.user_data for d in from_stack("dev", {"keepalivedVersion": "2.4.3"}).droplets
    )
    assert [r.url for r in newer] == [KEEPALIVED_URL.format(version="2.4.3")]


def test_a_keepalived_url_outside_the_lab_is_not_served_and_says_why() -> None:
    emulator = Emulator(token="dop_v1_test")
    elsewhere = "https://mirror.example/keepalived-2.3.4.tar.gz"
    spec = from_stack("dev", {"keepalivedUrl": elsewhere})
    said = serve_keepalived_tarballs(emulator, [d.user_data for d in spec.droplets])
    assert emulator.files == {}
    assert len(said) == 1 and elsewhere in said[0] and "outside the lab" in said[0]
