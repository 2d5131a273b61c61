"""`reconcile` (timer) catches missed transitions, and two MASTERs never ping-pong the IP.

The droplets' private and public IPs are loopback addresses here, so each one's nginx is a
local server the test controls, and a test can cut one path and not the other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
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
def keepalived(tmp_path: Path) -> Iterator[FakeKeepalived]:
    with fake_keepalived(tmp_path) as process:
        yield process


@pytest.fixture
def nodes(
    cloud: Cloud,
    tmp_path: Path,
    health: list[HealthServer],
    public: list[HealthServer],
    keepalived: FakeKeepalived,
) -> list[Node]:
    """Both droplets as settled MASTERs with a live keepalived; 0 has the higher priority."""
    made = [cloud.node(tmp_path, i, health_port=health[0].port) for i in (0, 1)]
    for node in made:
        node.cache_identity()
        node.set_state("MASTER", keepalived_pid=keepalived.pid)
    return made


def test_reconcile_does_nothing_when_the_recorded_process_is_not_keepalived(
    cloud: Cloud, nodes: list[Node]
) -> None:
    nodes[0].set_state("MASTER", keepalived_pid=os.getpid())

    run = nodes[0].run("reconcile")

    assert run.code == 0
    assert "not running" in run.log
    assert cloud.emulator.calls() == []


def test_reconcile_does_nothing_as_backup(
    cloud: Cloud, nodes: list[Node], keepalived: FakeKeepalived
) -> None:
    nodes[1].set_state("BACKUP", keepalived_pid=keepalived.pid)

    assert nodes[1].run("reconcile").code == 0

    assert cloud.emulator.calls() == []


def test_reconcile_claims_an_unassigned_ip(cloud: Cloud, nodes: list[Node]) -> None:
    run = nodes[1].run("reconcile")

    assert run.code == 0, run.log
    assert cloud.holder() == nodes[1].droplet.id


def test_reconcile_claims_the_ip_from_a_lower_priority_member(
    cloud: Cloud, nodes: list[Node]
) -> None:
    cloud.emulator.assign_now(RESERVED_IP, nodes[1].droplet.id)

    run = nodes[0].run("reconcile")

    assert run.code == 0, run.log
    assert cloud.holder() == nodes[0].droplet.id
    assert cloud.assigns() == 1


def test_reconcile_claims_the_ip_from_a_droplet_outside_the_cluster(
    cloud: Cloud, nodes: list[Node]
) -> None:
    stranger = cloud.emulator.add_droplet("stranger", "127.0.0.9", "198.51.100.9", ["other"])
    cloud.emulator.assign_now(RESERVED_IP, stranger.id)

    run = nodes[1].run("reconcile")

    assert run.code == 0, run.log
    assert cloud.holder() == nodes[1].droplet.id


def test_reconcile_leaves_the_ip_on_a_higher_priority_member_that_answers_as_master(
    cloud: Cloud, nodes: list[Node]
) -> None:
    cloud.emulator.assign_now(RESERVED_IP, nodes[0].droplet.id)

    runs = [nodes[1].run("reconcile") for _ in range(3)]

    assert [r.code for r in runs] == [0, 0, 0]
    assert cloud.assigns() == 0
    assert "answers as MASTER; leaving it" in runs[-1].log
    assert cloud.holder() == nodes[0].droplet.id


def test_reconcile_leaves_the_ip_on_the_holder_when_only_the_vpc_is_cut(
    cloud: Cloud, nodes: list[Node], health: list[HealthServer]
) -> None:
    """Its private health URL is unreachable, but clients reach it: taking the IP would start
    a ping-pong with the holder's own reconcile (issue: full VPC partition)."""
    cloud.emulator.assign_now(RESERVED_IP, nodes[0].droplet.id)
    health[0].close()

    runs = [nodes[1].run("reconcile") for _ in range(3)]

    assert [r.code for r in runs] == [0, 0, 0], runs[-1].log
    assert cloud.assigns() == 0
    assert cloud.holder() == nodes[0].droplet.id


def test_reconcile_claims_from_a_higher_priority_member_after_two_unanswered_probes(
    cloud: Cloud, nodes: list[Node], public: list[HealthServer]
) -> None:
    cloud.emulator.assign_now(RESERVED_IP, nodes[0].droplet.id)
    public[0].role = None

    first = nodes[1].run("reconcile")
    assert cloud.assigns() == 0
    second = nodes[1].run("reconcile")

    assert (first.code, second.code) == (0, 0), second.log
    assert "did not answer (1 in a row)" in first.log
    assert cloud.holder() == nodes[1].droplet.id


def test_reconcile_claims_at_once_from_a_holder_that_says_it_is_not_master(
    cloud: Cloud, nodes: list[Node], public: list[HealthServer]
) -> None:
    cloud.emulator.assign_now(RESERVED_IP, nodes[0].droplet.id)
    public[0].role = "FAULT"

    run = nodes[1].run("reconcile")

    assert run.code == 0, run.log
    assert cloud.holder() == nodes[1].droplet.id
    assert cloud.assigns() == 1


def test_an_answer_as_master_resets_the_failure_count(
    cloud: Cloud, nodes: list[Node], public: list[HealthServer]
) -> None:
    cloud.emulator.assign_now(RESERVED_IP, nodes[0].droplet.id)

    for role in (None, "MASTER", None):
        public[0].role = role
        assert nodes[1].run("reconcile").code == 0

    assert cloud.assigns() == 0


def test_two_masters_settle_on_the_higher_priority_without_ping_pong(
    cloud: Cloud, nodes: list[Node]
) -> None:
    primary, backup = nodes
    assert backup.run("claim").code == 0
    assert primary.run("reconcile").code == 0
    settled = cloud.assigns()

    for _ in range(5):
        assert backup.run("reconcile").code == 0
        assert primary.run("reconcile").code == 0

    assert settled == 2
    assert cloud.assigns() == settled
    assert cloud.holder() == primary.droplet.id


def test_status_prints_state_holder_peers_and_keepalived(
    cloud: Cloud, nodes: list[Node], keepalived: FakeKeepalived
) -> None:
    cloud.emulator.assign_now(RESERVED_IP, nodes[0].droplet.id)
    peer = cloud.droplets[1]
    nodes[0].peers_file.write_text(
        json.dumps(
            {
                "self": {"id": nodes[0].droplet.id, "name": "a", "private_ip": "10.0.0.2"},
                "peers": [{"id": peer.id, "name": peer.name, "private_ip": "10.0.0.3"}],
                "fetched_at": 0,
            }
        )
    )

    run = nodes[0].run("status")

    report = json.loads(run.out)
    assert run.code == 0
    assert report["state"] == "MASTER"
    assert report["keepalived_running"] is True
    assert report["holder"] == {"id": nodes[0].droplet.id, "name": nodes[0].droplet.name}
    assert [p["name"] for p in report["peers"]] == [peer.name]
    assert report["reserved_ip"] == RESERVED_IP
