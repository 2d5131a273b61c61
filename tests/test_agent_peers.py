"""`peers` (as ha-web) finds the cluster through the API; `apply-peers` (as root) hands it on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.emulator import Fault
from tests.agent_harness import Cloud, Node, fake_keepalived, running_cloud

FAKE_NFT = """#!/bin/sh
cat > "$(dirname "$0")/nft.input"
if [ -e "$(dirname "$0")/nft.fail" ]; then
    echo "Error: No such file or directory; did you mean table 'ha_web' in family inet?" >&2
    exit 1
fi
"""


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    with running_cloud() as running:
        running.emulator.bind_source("127.0.0.1", running.droplets[0].id)
        yield running


@pytest.fixture
def node(cloud: Cloud, tmp_path: Path) -> Node:
    return cloud.node(tmp_path)


@pytest.fixture
def nft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for nft on PATH that records the script it is given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nft"
    script.write_text(FAKE_NFT)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


def _peers(node: Node) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(node.peers_file.read_text())
    return loaded


def test_peers_reads_metadata_once_and_writes_self_and_peers(cloud: Cloud, node: Node) -> None:
    me, other = cloud.droplets

    first, second = node.run("peers"), node.run("peers")

    assert (first.code, second.code) == (0, 0), first.log
    assert len(cloud.emulator.calls("GET", "/metadata/v1.json")) == 1
    assert all(not c.bearer for c in cloud.emulator.calls(path="/metadata/*"))
    assert json.loads(node.droplet_file.read_text()) == {
        "droplet_id": me.id,
        "private_ip": me.private_ip,
    }
    peers = _peers(node)
    assert peers["self"] == {"id": me.id, "name": me.name, "private_ip": me.private_ip}
    assert peers["peers"] == [{"id": other.id, "name": other.name, "private_ip": other.private_ip}]


def test_peers_asks_for_the_cluster_tag_and_follows_next_page_links(
    cloud: Cloud, node: Node
) -> None:
    third = cloud.emulator.add_droplet(
        "ha-web-test-2", "10.10.0.4", "198.51.100.4", ["ha-web-test"]
    )
    cloud.emulator.add_droplet("elsewhere", "10.10.0.9", "198.51.100.9", ["other"])
    cloud.emulator.max_per_page = 1

    run = node.run("peers")

    assert run.code == 0, run.log
    listed = cloud.emulator.calls("GET", "/v2/droplets")
    assert len(listed) == 3
    assert "tag_name=ha-web-test" in listed[0].query
    assert [p["id"] for p in _peers(node)["peers"]] == [cloud.droplets[1].id, third.id]


def test_peers_leaves_an_unchanged_file_alone(cloud: Cloud, node: Node) -> None:
    assert node.run("peers").code == 0
    written = node.peers_file.stat().st_mtime_ns

    assert node.run("peers").code == 0

    assert node.peers_file.stat().st_mtime_ns == written


def test_peers_notices_a_replaced_droplet(cloud: Cloud, node: Node) -> None:
    assert node.run("peers").code == 0

    new = cloud.emulator.replace_droplet(cloud.droplets[1].id, "10.10.0.7")
    assert node.run("peers").code == 0

    assert _peers(node)["peers"] == [{"id": new.id, "name": new.name, "private_ip": "10.10.0.7"}]


def test_peers_fails_clearly_when_no_peer_is_known(cloud: Cloud, node: Node) -> None:
    cloud.emulator.remove_droplet(cloud.droplets[1].id)

    run = node.run("peers")

    assert run.code == 1
    assert "no peer known" in run.log
    assert "ha-web-test" in run.log
    assert not node.peers_file.exists()


def test_peers_fails_when_the_api_is_down_and_no_peer_is_known(cloud: Cloud, node: Node) -> None:
    cloud.emulator.add_fault(Fault.server_error("GET", "/v2/droplets", times=None))

    run = node.run("peers")

    assert run.code == 1
    assert "500" in run.log


def test_peers_keeps_the_known_list_when_the_api_fails(cloud: Cloud, node: Node) -> None:
    assert node.run("peers").code == 0
    known = node.peers_file.read_text()
    cloud.emulator.add_fault(Fault.server_error("GET", "/v2/droplets", times=None))

    run = node.run("peers")

    assert run.code == 0
    assert "keeping the known peers" in run.log
    assert node.peers_file.read_text() == known


def test_peers_keeps_the_known_list_when_the_api_lists_no_peer(cloud: Cloud, node: Node) -> None:
    assert node.run("peers").code == 0
    known = node.peers_file.read_text()
    cloud.emulator.remove_droplet(cloud.droplets[1].id)

    run = node.run("peers")

    assert run.code == 0
    assert node.peers_file.read_text() == known


def test_apply_peers_renders_the_include_the_nft_set_and_the_hold_file(
    cloud: Cloud, node: Node, nft: Path
) -> None:
    assert node.run("peers").code == 0

    run = node.run("apply-peers")

    assert run.code == 0, run.log
    conf = node.peers_conf.read_text()
    assert "unicast_src_ip 10.10.0.2\nunicast_peer {\n  10.10.0.3\n}\n" in conf
    assert (nft / "nft.input").read_text() == (
        "flush set inet ha_web_test vrrp_peers\n"
        "add element inet ha_web_test vrrp_peers { 10.10.0.3 }\n"
    )
    assert node.hold_file.read_text() == "0\n"


def test_apply_peers_holds_keepalived_when_there_is_no_peers_file(node: Node, nft: Path) -> None:
    run = node.run("apply-peers")

    assert run.code == 1
    assert "run `ha-web-agent peers`" in run.log
    assert node.hold_file.read_text() == "1\n"


def test_apply_peers_refuses_a_public_address_and_changes_nothing(node: Node, nft: Path) -> None:
    node.peers_conf.write_text("unicast_src_ip 10.10.0.2\n")
    node.hold_file.write_text("0\n")
    node.peers_file.write_text(
        json.dumps(
            {
                "self": {"id": 1, "name": "a", "private_ip": "10.10.0.2"},
                "peers": [{"id": 2, "name": "b", "private_ip": "198.51.100.7"}],
                "fetched_at": 0,
            }
        )
    )

    run = node.run("apply-peers")

    assert run.code == 1
    assert "198.51.100.7 is not a private IPv4 address" in run.log
    assert node.hold_file.read_text() == "0\n"
    assert node.peers_conf.read_text() == "unicast_src_ip 10.10.0.2\n"
    assert not (nft / "nft.input").exists()


def test_apply_peers_reloads_keepalived_only_when_the_include_changes(
    cloud: Cloud, node: Node, nft: Path, tmp_path: Path
) -> None:
    with fake_keepalived(tmp_path) as keepalived:
        node.keepalived_pid_file.write_text(f"{keepalived.pid}\n")
        assert node.run("peers").code == 0
        assert node.run("apply-peers").code == 0
        assert node.run("apply-peers").code == 0
        cloud.emulator.replace_droplet(cloud.droplets[1].id, "10.10.0.8")
        assert node.run("peers").code == 0
        assert node.run("apply-peers").code == 0

        assert keepalived.wait_for_hups(2) == 2
    assert "10.10.0.8" in node.peers_conf.read_text()


def test_apply_peers_warns_and_goes_on_without_nft(
    cloud: Cloud, node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert node.run("peers").code == 0
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    run = node.run("apply-peers")

    assert run.code == 0
    assert "nft not found" in run.log
    assert node.hold_file.read_text() == "0\n"


def test_apply_peers_warns_when_the_nft_table_is_missing(
    cloud: Cloud, node: Node, nft: Path
) -> None:
    assert node.run("peers").code == 0
    (nft / "nft.fail").touch()

    run = node.run("apply-peers")

    assert run.code == 0
    assert "could not update nft set inet ha_web_test vrrp_peers" in run.log
    assert node.peers_conf.exists()
