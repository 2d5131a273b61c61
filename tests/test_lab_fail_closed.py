"""Fail closed: a node whose host firewall does not load neither serves nor claims the
reserved IP, and its metadata lock, a separate table loaded by a separate unit, still holds."""

from __future__ import annotations

import time

import pytest

from lab import netns
from lab.cluster import Lab, LabError
from lab.droplet import Droplet
from lab.topology import METADATA_IP
from tests.lab_fixtures import BOOT_BOUND, RECONCILE, MakeLab, journals, make_lab, wait_runs

pytestmark = pytest.mark.lab
__all__ = ["make_lab"]
METADATA = f"http://{METADATA_IP}/metadata/v1.json"
SERVING_UNITS = (
    "keepalived.service",
    "nginx.service",
    "ha-web-peers.service",
    "ha-web-reconcile.service",
)


def _metadata_status(droplet: Droplet, user: str | None) -> str:
    curl = ["curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", METADATA]
    return droplet.run(curl, user=user).stdout


def _state(droplet: Droplet, unit: str) -> str:
    return droplet.systemctl("is-active", unit).stdout.strip()


def _assigns_by(lab: Lab, name: str, since: float) -> int:
    address = lab.droplets[name].spec.public_ip
    calls = lab.emulator.calls("POST", "/v2/reserved_ips/*")
    return len([c for c in calls if c.source == address and c.received >= since])


def test_a_node_whose_firewall_fails_to_load_after_a_reboot_neither_serves_nor_claims(
    make_lab: MakeLab,
) -> None:
    lab = make_lab()
    primary_name, backup_name = lab.spec.primary, lab.spec.backup
    primary = lab.droplets[primary_name]
    try:
        lab.wait_serving(primary_name, BOOT_BOUND)
        lab.crash(primary_name)
        lab.wait_serving(backup_name, BOOT_BOUND)
    except LabError as error:
        raise AssertionError(journals(lab)) from error
    # A crash gives the droplet a fresh network namespace, as a reboot has no ruleset.
    assert netns.run(primary.netns, ["nft", "list", "ruleset"]).stdout.strip() == ""
    # What a bad edit, or settings nft refuses, leave behind for the next boot.
    (primary.root / "etc/ha-web/firewall.nft").write_text("table inet ha_web { oops }\n")

    booted = time.time()
    lab.boot([primary_name])
    # Every startup job done: a unit whose Requires= failed is then left inactive.
    assert primary.machine.wait_started(60) == "degraded"
    # Each run of the reconcile timer was a chance to claim; failback would take about 4 s.
    wait_runs(lab, primary, RECONCILE, booted, 3)

    assert _state(primary, "ha-web-firewall.service") == "failed"
    states = {unit: _state(primary, unit) for unit in SERVING_UNITS}
    assert all(state != "active" for state in states.values()), (states, journals(lab))
    assert primary.pids("keepalived") == [] and primary.pids("nginx") == []
    assert _assigns_by(lab, primary_name, booted) == 0, journals(lab)
    assert lab.holder() == backup_name
    assert {s.node for s in lab.samples(booted)} == {backup_name}, "the site kept answering"
    # The metadata lock is its own table and unit: it loaded although the firewall did not.
    assert _state(primary, "ha-web-metadata-lock.service") == "active"
    assert _metadata_status(primary, None) == "200"
    assert _metadata_status(primary, "ha-web") == "200"
    assert _metadata_status(primary, "keepalived_script") != "200"
