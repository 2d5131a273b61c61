"""`maintenance on|off|status`: a planned switchover that reports done only when another member
holds the reserved IP and answers, against the emulated API.

The droplets' private IPs are loopback addresses, so each one's health URL is a local server
the test controls. keepalived and the other node's agent are played by a thread that moves the
IP once the maintenance file says 1, as they would.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.agent_harness import (
    RESERVED_IP,
    Cloud,
    FakeKeepalived,
    HealthServer,
    Node,
    fake_keepalived,
)

ACTIONS = "/v2/reserved_ips/*/actions"


@pytest.fixture
def node(cloud: Cloud, tmp_path: Path, health: list[HealthServer]) -> Node:
    """Droplet 0: MASTER, holding the IP, knowing droplet 1 as its peer."""
    primary = cloud.node(tmp_path, 0, health_port=health[0].port)
    primary.cache_identity()
    primary.set_state("MASTER")
    me, peer = cloud.droplets
    peers = {
        "self": {"id": me.id, "name": me.name, "private_ip": me.private_ip},
        "peers": [{"id": peer.id, "name": peer.name, "private_ip": peer.private_ip}],
        "fetched_at": 0,
    }
    primary.peers_file.write_text(json.dumps(peers))
    cloud.emulator.assign_now(RESERVED_IP, me.id)
    return primary


@contextlib.contextmanager
def takeover(
    cloud: Cloud, node: Node, after: float = 0.2, before_move: Callable[[], None] = lambda: None
) -> Iterator[threading.Event]:
    """keepalived and the peer's agent: once the file says 1, FAULT here and the IP moves."""
    stop, moved = threading.Event(), threading.Event()

    def play() -> None:
        while not stop.is_set():
            if node.maintenance_file.exists() and node.maintenance_file.read_text() == "1\n":
                node.set_state("FAULT", for_seconds=0.0, previous="MASTER")
                if not stop.wait(after):
                    before_move()
                    cloud.emulator.assign_now(RESERVED_IP, cloud.droplets[1].id)
                    moved.set()
                return
            stop.wait(0.01)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    try:
        yield moved
    finally:
        stop.set()
        thread.join(timeout=5)


def test_on_reports_done_once_another_member_holds_the_ip_and_answers(
    cloud: Cloud, node: Node
) -> None:
    with takeover(cloud, node, after=0.3) as moved:
        started = time.monotonic()
        run = node.run("maintenance", "on", "--timeout", "5")
        elapsed = time.monotonic() - started

    assert run.code == 0, run.log
    assert moved.is_set()
    assert elapsed >= 0.3
    assert cloud.holder() == cloud.droplets[1].id
    assert node.maintenance_file.read_text() == "1\n"
    assert f"done: {RESERVED_IP} is on {cloud.droplets[1].name}" in run.out
    assert cloud.assigns() == 0, "the node in maintenance never assigns the IP itself"


def test_on_waits_while_the_new_holder_does_not_answer_its_health_url(
    cloud: Cloud, node: Node, health: list[HealthServer]
) -> None:
    def peer_not_serving_yet() -> None:
        health[1].healthy = False

    with takeover(cloud, node, after=0.0, before_move=peer_not_serving_yet) as moved:
        thread, result = node.run_in_thread("maintenance", "on", "--timeout", "5")
        assert moved.wait(timeout=5)
        time.sleep(0.3)
        still_waiting = thread.is_alive()
        health[1].healthy = True
        thread.join(timeout=5)

    assert still_waiting, "done was reported while the new holder answered 503"
    assert result[0].code == 0, result[0].log
    assert "done:" in result[0].out


def test_on_times_out_with_a_clear_error_and_rolls_maintenance_back(
    cloud: Cloud, node: Node
) -> None:
    """Left on, a later death of the holder would leave no member eligible for MASTER."""
    node.set_state("FAULT", previous="MASTER")
    started = time.monotonic()

    run = node.run("maintenance", "on", "--timeout", "0.5")
    elapsed = time.monotonic() - started

    assert run.code == 1
    assert 0.5 <= elapsed < 2.0
    assert node.maintenance_file.read_text() == "0\n"
    assert "maintenance rolled back to off" in run.log
    assert "is still on this droplet" in run.log
    assert "--force" in run.log
    assert "done:" not in run.out


def test_on_rolls_back_when_the_api_refuses_the_token(cloud: Cloud, node: Node) -> None:
    node.token_file.write_text("dop_v1_revoked\n")

    run = node.run("maintenance", "on", "--timeout", "2")

    assert run.code == 1
    assert node.maintenance_file.read_text() == "0\n"
    assert "the API refused" in run.log


def test_forced_on_stays_on_when_the_handover_fails(cloud: Cloud, node: Node) -> None:
    node.set_state("FAULT", previous="MASTER")

    run = node.run("maintenance", "on", "--force", "--timeout", "0.3")

    assert run.code == 1
    assert node.maintenance_file.read_text() == "1\n"
    assert "maintenance stays on (--force)" in run.log
    assert "ha-web-agent maintenance off" in run.log


def test_on_timeout_names_a_keepalived_that_did_not_go_to_fault(cloud: Cloud, node: Node) -> None:
    run = node.run("maintenance", "on", "--timeout", "0.2")

    assert run.code == 1
    assert "keepalived here says MASTER, not FAULT" in run.log
    assert str(node.maintenance_file) in run.log


def test_on_refuses_when_no_other_member_answers(
    cloud: Cloud, node: Node, health: list[HealthServer]
) -> None:
    health[1].healthy = False

    run = node.run("maintenance", "on", "--timeout", "5")

    assert run.code == 1
    assert "refusing maintenance on" in run.log
    assert "127.0.0.3" in run.log
    assert "--force" in run.log
    assert not node.maintenance_file.exists()
    assert cloud.holder() == node.droplet.id


def test_on_refuses_when_no_peer_is_known(cloud: Cloud, node: Node) -> None:
    node.peers_file.unlink()

    run = node.run("maintenance", "on")

    assert run.code == 1
    assert "no peer is known" in run.log
    assert not node.maintenance_file.exists()


def test_force_goes_into_maintenance_without_a_healthy_member(
    cloud: Cloud, node: Node, health: list[HealthServer]
) -> None:
    health[1].healthy = False

    run = node.run("maintenance", "on", "--force", "--timeout", "0.3")

    assert node.maintenance_file.read_text() == "1\n"
    assert "refusing" not in run.log
    assert run.code == 1, "nothing answers, so it is not done"
    assert "answers 503" in run.log or "still on this droplet" in run.log


def test_off_clears_the_file_and_says_how_failback_goes(cloud: Cloud, node: Node) -> None:
    node.maintenance_file.write_text("1\n")

    run = node.run("maintenance", "off")

    assert run.code == 0, run.log
    assert node.maintenance_file.read_text() == "0\n"
    assert "failback" in run.out
    assert cloud.emulator.calls() == [], "off needs no API call"


def test_status_shows_whether_maintenance_is_on(cloud: Cloud, node: Node) -> None:
    off = node.run("maintenance", "status")
    node.maintenance_file.write_text("1\n")
    on = node.run("maintenance", "status")

    assert (off.code, on.code) == (0, 0)
    assert off.out.startswith("maintenance off")
    assert on.out.startswith("maintenance on")
    assert "keepalived state: MASTER" in on.out


def test_agent_status_reports_maintenance(cloud: Cloud, node: Node) -> None:
    node.maintenance_file.write_text("1\n")

    report = json.loads(node.run("status").out)

    assert report["maintenance"] is True


def test_a_node_in_maintenance_never_claims_even_if_state_json_says_master(
    cloud: Cloud, node: Node, tmp_path: Path
) -> None:
    cloud.emulator.assign_now(RESERVED_IP, cloud.droplets[1].id)
    node.maintenance_file.write_text("1\n")

    claim = node.run("claim")
    notify = node.run("notify", "INSTANCE", "ha_web", "MASTER", "200")
    keepalived: FakeKeepalived
    with fake_keepalived(tmp_path) as keepalived:
        node.set_state("MASTER", keepalived_pid=keepalived.pid)
        reconcile = node.run("reconcile")

    assert (claim.code, notify.code, reconcile.code) == (0, 0, 0)
    assert "in maintenance" in claim.log
    assert cloud.emulator.calls() == []
    assert cloud.holder() == cloud.droplets[1].id


def test_a_missing_state_dir_is_named_with_the_fix(cloud: Cloud, node: Node) -> None:
    node.configure(maintenance_file=str(node.root / "gone" / "maintenance"))

    run = node.run("maintenance", "off")

    assert run.code == 1
    assert "systemd-tmpfiles --create" in run.log


def test_a_timeout_that_is_not_a_positive_number_is_refused(node: Node) -> None:
    with pytest.raises(SystemExit) as exit_info:
        node.run("maintenance", "on", "--timeout", "0")

    assert exit_info.value.code == 2
    assert not node.maintenance_file.exists()
