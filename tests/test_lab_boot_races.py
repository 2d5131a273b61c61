"""Boot races: a booting node never takes the IP from a healthy primary."""

from __future__ import annotations

import json
import time

import pytest

from lab.cluster import Lab, LabError
from lab.journal_lines import entered
from tests.lab_fixtures import (
    BOOT_BOUND,
    PEERS,
    RECONCILE,
    MakeLab,
    journals,
    make_lab,
    wait_runs,
)

pytestmark = pytest.mark.lab
__all__ = ["make_lab"]


def _assigns_by(lab: Lab, name: str) -> int:
    address = lab.droplets[name].spec.public_ip
    return len([c for c in lab.emulator.calls("POST", "/v2/reserved_ips/*") if c.source == address])


def _primary_up_alone(make_lab: MakeLab) -> Lab:
    lab = make_lab(boot=False)
    lab.boot([lab.spec.primary])
    try:
        lab.wait_serving(lab.spec.primary, BOOT_BOUND)
    except LabError as error:
        raise AssertionError(journals(lab)) from error
    return lab


def test_backup_booting_while_primary_serves_never_moves_the_ip(make_lab: MakeLab) -> None:
    lab = _primary_up_alone(make_lab)
    backup = lab.droplets[lab.spec.backup]
    started = time.time()
    lab.boot([lab.spec.backup])
    lab.wait_for(
        lambda: entered(backup.journal(), "BACKUP", started) != [], 30, "the backup's BACKUP"
    )
    wait_runs(lab, backup, RECONCILE, started)
    assert entered(backup.journal(), "MASTER", started) == [], journals(lab)
    assert {s.node for s in lab.samples(started)} == {lab.spec.primary}
    assert _assigns_by(lab, lab.spec.backup) == 0, journals(lab)


def test_node_booting_without_the_api_knows_no_peers_and_takes_nothing(
    make_lab: MakeLab,
) -> None:
    lab = _primary_up_alone(make_lab)
    backup = lab.droplets[lab.spec.backup]
    lab.topology.block_api(backup.spec.public_ip, True)
    try:
        started = time.time()
        lab.boot([lab.spec.backup])
        wait_runs(lab, backup, PEERS, started)
        wait_runs(lab, backup, RECONCILE, started)
        assert backup.path("/run/ha-web/hold").read_text().strip() == "1"
        assert {s.node for s in lab.samples(started)} == {lab.spec.primary}
        assert _assigns_by(lab, lab.spec.backup) == 0, journals(lab)
    finally:
        unblocked = time.time()
        lab.topology.block_api(backup.spec.public_ip, False)
    lab.wait_for(
        lambda: backup.path("/run/ha-web/hold").read_text().strip() == "0",
        15,
        "the backup's peers service to succeed once the API answers",
    )
    lab.wait_for(
        lambda: entered(backup.journal(), "BACKUP", unblocked) != [],
        15,
        "the released backup's keepalived to hear the primary",
    )
    wait_runs(lab, backup, RECONCILE, unblocked)
    assert entered(backup.journal(), "MASTER", unblocked) == [], journals(lab)
    assert lab.holder() == lab.spec.primary


def test_both_nodes_booting_together_leave_exactly_one_holder(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.wait_serving(lab.spec.primary, BOOT_BOUND)
    serving = time.time()
    for droplet in lab.droplets.values():
        wait_runs(lab, droplet, RECONCILE, serving)
    states = [
        json.loads(d.path("/run/ha-web/state.json").read_text())["state"]
        for d in lab.droplets.values()
    ]
    assert sorted(states) == ["BACKUP", "MASTER"], journals(lab)
    assert lab.holder() == lab.spec.primary
    assert _assigns_by(lab, lab.spec.backup) == 0
