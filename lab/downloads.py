"""What a real lab droplet downloads while it boots, served by the lab's emulator.

Today that is keepalived's tarball: each droplet's runcmd runs the product's
build-keepalived, which downloads keepalivedUrl with curl, checks its sha256 and builds it.
The lab points keepalivedUrl at the emulator's downloads host (lab/spec.py,
KEEPALIVED_URL), and the emulator serves Debian's orig tarball there, byte-identical to the
release, over https with the lab's CA (lab/lab_ca.py).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

from lab import netns
from lab.emulator import Emulator, EmulatorServer
from lab.keepalived_source import CACHE_DIR, build_requests, fetch_debian_tarball

HTTPS_PORT = 443
DOWNLOADS_IP = "192.0.2.20"
"""The downloads host, on the router as the API is but at its own address: a release
server is not the API's host, so cutting a droplet off the API (Topology.block_api)
leaves its download alone."""


def serve_keepalived_tarballs(emulator: Emulator, user_data: Iterable[str]) -> list[str]:
    """Serve the tarball of every keepalived build the user-data runs from the emulator;
    one line for each, saying what is served where (or why a download will fail)."""
    said = []
    for request in build_requests(user_data):
        url = urlsplit(request.url)
        on_host = url.hostname == DOWNLOADS_IP and url.port in (None, HTTPS_PORT)
        if url.scheme != "https" or not on_host:
            said.append(
                f"keepalived {request.version}: {request.url} is outside the lab, so the "
                f"droplet's download fails; render with ha-web:keepalivedUrl on https://{DOWNLOADS_IP}/"
            )
            continue
        tarball = fetch_debian_tarball(request.version, CACHE_DIR / request.version, request.sha256)
        emulator.serve_file(url.path, tarball)
        said.append(
            f"keepalived {request.version}: the emulator serves Debian's orig tarball "
            f"(sha256 {request.sha256[:12]}...) at {request.url}, signed by the lab's CA"
        )
    return said


def serve_downloads(router: str, emulator: Emulator, tls: ssl.SSLContext) -> EmulatorServer:
    """The emulator on the downloads host, over https, inside the router namespace."""
    netns.ip("-n", router, "addr", "add", f"{DOWNLOADS_IP}/32", "dev", "lo")
    return serve_in(router, emulator, DOWNLOADS_IP, HTTPS_PORT, tls)


def serve_in(
    namespace: str,
    emulator: Emulator,
    host: str = "0.0.0.0",
    port: int = 80,
    tls: ssl.SSLContext | None = None,
) -> EmulatorServer:
    """The emulator listening inside `namespace`: the socket is made by a thread that
    entered it, and a socket stays in the namespace it was made in."""
    box: dict[str, EmulatorServer] = {}
    failed: list[BaseException] = []

    def bind() -> None:
        try:
            netns.enter(namespace)
            box["server"] = EmulatorServer(emulator, host, port, tls)
        except BaseException as error:
            failed.append(error)

    thread = threading.Thread(target=bind, name=f"bind-{namespace}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return box["server"].start()
