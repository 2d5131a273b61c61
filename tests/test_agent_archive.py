"""The agent's zip: built the same way every time, checked by contents, runnable as a droplet
runs it (unpacked, under the name ha_web_agent, without this repository on the path)."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cloudinit import agent_archive


def test_the_same_sources_build_the_same_bytes_whatever_their_order() -> None:
    forward = {"ha_web_agent/a.py": b"a = 1\n", "ha_web_agent/b.py": b"b = 2\n"}
    backward = dict(reversed(forward.items()))

    built = agent_archive.build(forward)

    assert built == agent_archive.build(backward)
    infos = zipfile.ZipFile(io.BytesIO(built)).infolist()
    assert [i.filename for i in infos] == sorted(forward)
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.external_attr >> 16 == 0o100644
        assert info.compress_type == zipfile.ZIP_STORED


def test_the_archive_is_stale_when_a_member_is_missing_extra_or_changed() -> None:
    package = {"ha_web_agent/a.py": b"a = 1\n", "ha_web_agent/b.py": b"b = 2\n"}
    built = agent_archive.build(package | {"ha_web_agent/old.py": b""})
    now = {"ha_web_agent/a.py": b"a = 10\n", "ha_web_agent/c.py": b"c = 3\n"}

    reason = agent_archive.stale_reason(built, now)

    assert reason == (
        "missing: ha_web_agent/c.py; not in the package: ha_web_agent/b.py, ha_web_agent/old.py; "
        "changed: ha_web_agent/a.py"
    )
    assert agent_archive.stale_reason(agent_archive.build(now), now) is None
    assert agent_archive.stale_reason(b"not a zip", now) == "it is not a zip file"


def test_a_missing_archive_is_refused_with_the_rebuild_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_archive, "ARCHIVE", tmp_path / "ha-web-agent.pyz.gz")

    with pytest.raises(RuntimeError, match=r"it is missing.*make agent"):
        agent_archive.checked_archive()


def test_an_archive_that_is_not_gzip_is_refused_with_the_rebuild_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "ha-web-agent.pyz.gz"
    archive.write_bytes(agent_archive.build(agent_archive.sources()))
    monkeypatch.setattr(agent_archive, "ARCHIVE", archive)

    with pytest.raises(RuntimeError, match=r"not gzip data.*make agent"):
        agent_archive.checked_archive()


def test_the_zip_stores_its_members_so_one_gzip_stream_spans_every_module() -> None:
    zipped = agent_archive.build(agent_archive.sources())
    with zipfile.ZipFile(io.BytesIO(zipped)) as opened:
        assert {i.compress_type for i in opened.infolist()} == {zipfile.ZIP_STORED}
    assert len(agent_archive.compress(zipped)) < 0.4 * len(zipped)


def test_the_committed_archive_unpacked_runs_as_ha_web_agent_outside_the_repository(
    tmp_path: Path,
) -> None:
    archive = gzip.decompress(agent_archive.checked_archive())
    zipfile.ZipFile(io.BytesIO(archive)).extractall(tmp_path)
    # Every module, not only those --help needs: the CLI imports most of them lazily.
    launcher = (
        f"import importlib, pkgutil, sys; sys.path.append({str(tmp_path)!r}); "
        "import ha_web_agent; "
        "[importlib.import_module(f'ha_web_agent.{m.name}') "
        " for m in pkgutil.iter_modules(ha_web_agent.__path__) if m.name != '__main__']; "
        "from ha_web_agent.cli import main; sys.exit(main(['status', '--help']))"
    )

    run = subprocess.run(
        [sys.executable, "-I", "-c", launcher],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert "usage: ha-web-agent status" in run.stdout
