"""The failover path against a misbehaving API: transient faults, then a rejected token."""

from __future__ import annotations

import time

import pytest

from lab import scenarios
from lab.cluster import Lab
from lab.droplet import Droplet
from lab.emulator import Call, Fault
from lab.journal_lines import runs_ended, stamp
from tests.lab_fixtures import dev_lab, journals

pytestmark = pytest.mark.lab
__all__ = ["dev_lab"]
ACTIONS = "/v2/reserved_ips/*/actions"
WRONG_TOKEN = "dop_v1_" + "0bad" * 16
RECONCILE = "ha-web-reconcile.service"


def _first_time(droplet: Droplet, text: str) -> float | None:
    return next((stamp(line) for line in droplet.journal().splitlines() if text in line), None)


def _restore_primary(lab: Lab) -> None:
    primary = lab.droplets[lab.spec.primary]
    assert primary.systemctl("start", "nginx.service").returncode == 0
    scenarios.ensure_steady(lab)


def test_new_master_claims_through_422_429_and_500_with_bounded_calls(dev_lab: Lab) -> None:
    lab = dev_lab
    scenarios.ensure_steady(lab)
    for fault in (
        Fault.pending_event("POST", ACTIONS),
        Fault.pending_event("POST", ACTIONS),
        Fault.rate_limited(retry_after=1, path=ACTIONS),
        Fault.server_error("POST", ACTIONS),
    ):
        lab.emulator.add_fault(fault)
    started = time.time()
    assert lab.droplets[lab.spec.primary].systemctl("stop", "nginx.service").returncode == 0

    def posts() -> list[Call]:
        return [c for c in lab.emulator.calls("POST", "/v2/*") if c.time >= started]

    # The emulator moves the IP while it answers the POST: wait for the logged answer.
    lab.wait_for(lambda: 201 in [c.status for c in posts()], 40, "the backup's assign to succeed")
    assert lab.holder() == lab.spec.backup
    calls = [c for c in lab.emulator.calls(path="/v2/*") if c.time >= started]
    assert [c.status for c in posts()] == [422, 422, 429, 500, 201], journals(lab)
    assert len(calls) <= 25
    assert lab.emulator.faults == []
    _restore_primary(lab)


def test_rejected_token_is_logged_keeps_vrrp_up_and_recovers(dev_lab: Lab) -> None:
    lab = dev_lab
    scenarios.ensure_steady(lab)
    backup = lab.droplets[lab.spec.backup]
    keepalived_before = sorted(backup.pids("keepalived"))
    lab.emulator.set_token(WRONG_TOKEN)
    try:
        lab.droplets[lab.spec.primary].systemctl("stop", "nginx.service")
        lab.wait_for(
            lambda: _first_time(backup, "rejected the token") is not None,
            30,
            "the agent to log the 401",
        )
        rejected = _first_time(backup, "rejected the token") or 0.0
        lab.wait_for(
            lambda: runs_ended(backup.journal(), RECONCILE, rejected) != [],
            30,
            "a reconcile run with the bad token, too",
        )
        assert lab.holder() == lab.spec.primary
        assert sorted(backup.pids("keepalived")) == keepalived_before
        for unit in ("keepalived.service", "nginx.service"):
            shown = backup.systemctl("show", "-p", "ActiveState,NRestarts", unit).stdout.split()
            assert sorted(shown) == ["ActiveState=active", "NRestarts=0"], (unit, shown)
        assert "state" in backup.path("/run/ha-web/state.json").read_text()
        assert '"MASTER"' in backup.path("/run/ha-web/state.json").read_text()
    finally:
        lab.emulator.set_token(lab.spec.token)
    lab.wait_for(lambda: lab.holder() == lab.spec.backup, 20, "reconcile to claim the IP")
    lab.wait_serving(lab.spec.backup, 10)
    _restore_primary(lab)
