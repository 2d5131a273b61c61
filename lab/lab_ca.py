"""A certificate authority of one lab, so its emulator can serve https that droplets trust.

keepalivedUrl must be https (components/settings_rules.py), and a droplet's curl verifies
the server against the system trust store. The lab makes a CA for each run, signs a
certificate for the emulator's address with it, and lays the CA into each droplet's trust
store (an adaptation of the root filesystem; the user-data is unchanged). The key never
leaves the lab's directory, which goes when the lab does.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.nspawn import clean_env

BUNDLE = "etc/ssl/certs/ca-certificates.crt"
"""The trust store Debian's curl (OpenSSL) reads; update-ca-certificates writes it."""
LOCAL_CERT = "usr/local/share/ca-certificates/ha-web-lab.crt"
"""Where a local CA belongs, so a later update-ca-certificates keeps it in the bundle."""
VALID_DAYS = 7


class LabCaError(RuntimeError):
    """The lab's certificates could not be made; the message says what openssl said."""


@dataclass(frozen=True)
class LabCa:
    directory: Path

    @property
    def certificate(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def server_certificate(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_certificate, self.server_key)
        return context

    def trust_files(self, rootfs: Path) -> dict[str, bytes]:
        """Files to lay into a droplet's disk: the image's trust store plus this CA."""
        ca = self.certificate.read_bytes()
        bundle = (rootfs / BUNDLE).read_bytes()
        return {f"/{LOCAL_CERT}": ca, f"/{BUNDLE}": bundle.rstrip(b"\n") + b"\n" + ca}


def make_ca(directory: Path, address: str) -> LabCa:
    """A new CA in `directory`, and a server certificate for the IP `address` signed by it."""
    if shutil.which("openssl", path=clean_env()["PATH"]) is None:
        raise LabCaError("openssl is not installed: run `make system-packages`")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = LabCa(directory)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc"]
    days = ["-days", str(VALID_DAYS)]
    _openssl(
        ["req", "-x509", *key, *days, "-subj", f"/CN=ha-web lab CA {directory.parent.name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-keyout", str(directory / "ca.key"), "-out", str(ca.certificate)],
    )  # fmt: skip
    request = directory / "server.csr"
    _openssl(
        ["req", *key, "-subj", f"/CN={address}",
         "-keyout", str(ca.server_key), "-out", str(request)],
    )  # fmt: skip
    extensions = directory / "server.ext"
    extensions.write_text(
        f"subjectAltName=IP:{address}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        ["x509", "-req", "-in", str(request), *days, "-CA", str(ca.certificate),
         "-CAkey", str(directory / "ca.key"), "-set_serial", "2", "-extfile", str(extensions),
         "-out", str(ca.server_certificate)],
    )  # fmt: skip
    return ca


def _openssl(args: list[str]) -> None:
    result = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, env=clean_env(), check=False
    )
    if result.returncode != 0:
        raise LabCaError(
            f"`openssl {' '.join(args[:2])}` failed ({result.returncode}): {result.stderr.strip()}"
        )
