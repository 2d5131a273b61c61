"""The droplet agent as one zip file: cloudinit/agent/ packed as the package ha_web_agent.

Rebuild after changing the agent, and commit the result: `make agent`, or
`python -m cloudinit.agent_archive`.

The zip stores its members uncompressed, and the whole zip is gzipped: one deflate stream
over every module finds what the modules share, which per-member compression cannot (about
9 KB less user-data, which DigitalOcean caps at 64 KiB). The stored zip is byte-for-byte
reproducible; its gzip is committed rather than made at render time, because zlib builds
differ (zlib-ng) and other bytes from another machine would change every droplet's user-data,
which replaces the droplets. So the build fixes everything a zip records (entry order,
timestamps, attributes), and whether the committed archive is current is judged by member
names and contents, never by compressed bytes.

On a droplet, runcmd unpacks it and compiles the package (docs/internals.md). Running the
zip itself would work (`PYTHONPATH=ha-web-agent.pyz python3 -m ha_web_agent`), but
zipimport never caches bytecode: every notify would compile every module it imports.
Measured on the 2-core development machine (python3.11, `python3 -I` launcher, medians of 20
interleaved runs): from spawning `notify ... MASTER` to the emulator's assign POST, 53 ms
unpacked and compiled, 63 ms from the zip (the single-file agent before the package: 53 ms);
`status --help`, 55 ms against 65 ms.
"""

from __future__ import annotations

import gzip
import io
import sys
import zipfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent / "agent"
ARCHIVE = Path(__file__).parent / "files" / "ha-web-agent.pyz.gz"
"""The zip, gzipped: cloud-init writes it out as the zip (encoding gz+b64)."""
PACKAGE_NAME = "ha_web_agent"
"""The name the package imports as on a droplet."""
REBUILD = "make agent (or: python -m cloudinit.agent_archive)"

# 1980-01-01, the earliest time a zip can record.
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
_UNIX = 3
_FILE_MODE = 0o100644


def sources(package_dir: Path = PACKAGE_DIR) -> dict[str, bytes]:
    """Archive member name -> contents, for every module of the package."""
    return {
        f"{PACKAGE_NAME}/{path.relative_to(package_dir).as_posix()}": path.read_bytes()
        for path in sorted(package_dir.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def build(members: dict[str, bytes]) -> bytes:
    """The zip: the same members always give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_TIMESTAMP)
            info.create_system = _UNIX
            info.external_attr = _FILE_MODE << 16
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, members[name])
    return buffer.getvalue()


def compress(zipped: bytes) -> bytes:
    """What is committed: the zip, gzipped with no name or time in the header."""
    return gzip.compress(zipped, compresslevel=9, mtime=0)


def members(archive: bytes) -> dict[str, bytes]:
    """Member name -> uncompressed contents."""
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        return {name: opened.read(name) for name in opened.namelist()}


def stale_reason(archive: bytes, package: dict[str, bytes]) -> str | None:
    """Why the archive does not hold exactly the package's sources, or None when it does."""
    try:
        packed = members(archive)
    except zipfile.BadZipFile:
        return "it is not a zip file"
    missing = sorted(package.keys() - packed.keys())
    extra = sorted(packed.keys() - package.keys())
    changed = sorted(n for n in package.keys() & packed.keys() if package[n] != packed[n])
    problems = [
        f"{what}: {', '.join(names)}"
        for what, names in (
            ("missing", missing),
            ("not in the package", extra),
            ("changed", changed),
        )
        if names
    ]
    return "; ".join(problems) or None


def checked_archive() -> bytes:
    """The committed gzipped zip, refused when it does not hold the package as it is now."""
    try:
        data = ARCHIVE.read_bytes()
    except FileNotFoundError:
        data = b""
    zipped = _unzipped(data) if data else None
    if not data:
        reason: str | None = "it is missing"
    elif zipped is None:
        reason = "it is not gzip data"
    else:
        reason = stale_reason(zipped, sources(PACKAGE_DIR))
    if reason:
        raise RuntimeError(
            f"{ARCHIVE} is not the agent in {PACKAGE_DIR} ({reason}). After changing the agent "
            f"run {REBUILD}, and commit the archive with the sources"
        )
    return data


def main() -> int:
    zipped = build(sources())
    before = ARCHIVE.read_bytes() if ARCHIVE.exists() else None
    if before is not None and _unzipped(before) == zipped:
        print(f"{ARCHIVE} unchanged: {len(before)} bytes")
        return 0
    data = compress(zipped)
    ARCHIVE.write_bytes(data)
    print(f"{ARCHIVE} rebuilt: {len(data)} bytes; commit it with the agent's sources")
    return 0


def _unzipped(data: bytes) -> bytes | None:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError):
        return None


if __name__ == "__main__":
    sys.exit(main())
