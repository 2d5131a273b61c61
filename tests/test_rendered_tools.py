"""Every rendered user-data passes the tools that will consume it: cloud-init's schema,
nginx -t, nft --check and shellcheck. The example stacks, and a stack whose settings sit
at the edges of what the rules allow (tests/stacks.py, EDGE_SETTINGS)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from cloudinit import paths
from tests.rendered import example_user_data, tool
from tests.stacks import edge_user_data, write_files


def _user_data() -> dict[str, str]:
    return {**example_user_data(), **edge_user_data()}


NODES = sorted(_user_data())
_SHELLS = ("/sh", "/bash", " sh", " bash")


@pytest.mark.parametrize("node", NODES)
def test_user_data_passes_the_cloud_init_schema(node: str, tmp_path: Path) -> None:
    document = tmp_path / "user-data.yaml"
    document.write_text(_user_data()[node])
    result = subprocess.run(
        [tool("cloud-init"), "schema", "-c", str(document), "--annotate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_check_catches_a_broken_document(tmp_path: Path) -> None:
    broken = tmp_path / "user-data.yaml"
    broken.write_text(example_user_data()[NODES[0]].replace("permissions: '0600'", "mode: 600"))
    result = subprocess.run(
        [tool("cloud-init"), "schema", "-c", str(broken)], capture_output=True, check=False
    )
    assert result.returncode != 0


@pytest.mark.parametrize("node", NODES)
def test_nginx_accepts_the_site(node: str, tmp_path: Path) -> None:
    site = tmp_path / "ha-web.conf"
    site.write_text(write_files(_user_data()[node])[paths.NGINX_SITE]["content"])
    wrapper = tmp_path / "nginx.conf"
    wrapper.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{\n  access_log off;\n  include /etc/nginx/mime.types;\n  include {site};\n}}\n"
    )
    result = subprocess.run(
        [tool("nginx"), "-t", "-q", "-c", str(wrapper), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("node", NODES)
def test_shell_scripts_pass_shellcheck(node: str, tmp_path: Path) -> None:
    files = write_files(_user_data()[node])
    scripts = [p for p, f in files.items() if f["content"].split("\n", 1)[0].endswith(_SHELLS)]
    assert paths.CHECK_NGINX in scripts
    for index, path in enumerate(scripts):
        script = tmp_path / f"script-{index}"
        script.write_text(files[path]["content"])
        result = subprocess.run(
            [tool("shellcheck"), str(script)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{path}:\n{result.stdout}"


@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("path", [paths.FIREWALL, paths.METADATA_LOCK])
def test_nft_rulesets_parse(node: str, path: str, tmp_path: Path) -> None:
    ruleset = tmp_path / "ruleset.nft"
    content = write_files(_user_data()[node])[path]["content"]
    # nft --check resolves user names; this host has no ha-web user, root stands in.
    ruleset.write_text(content.replace('meta skuid "ha-web"', 'meta skuid "root"'))
    result = subprocess.run(
        [tool("nft"), "--check", "-f", str(ruleset)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_nft_check_catches_overlapping_set_intervals(tmp_path: Path) -> None:
    """What the renderer's merge of adminCidrs prevents; proves --check sees it."""
    ruleset = tmp_path / "overlap.nft"
    ruleset.write_text(
        "table inet t {\n  set s {\n    type ipv4_addr\n    flags interval\n"
        "    elements = { 10.0.0.0/8, 10.1.0.0/16 }\n  }\n}\n"
    )
    result = subprocess.run(
        [tool("nft"), "--check", "-f", str(ruleset)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "conflicting intervals" in result.stderr


@pytest.mark.parametrize("node", NODES)
def test_first_boot_metadata_lock_parses(node: str) -> None:
    (bootcmd,) = yaml.safe_load(_user_data()[node])["bootcmd"]
    assert bootcmd[:3] == ["cloud-init-per", "once", "ha-web-metadata-lock"]
    nft, rule = bootcmd[3:]
    assert nft == "nft"
    result = subprocess.run(
        [tool("nft"), "--check", rule], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
