"""VRRP partition: both nodes may be MASTER, but the IP settles without ping-pong."""

from __future__ import annotations

import json
import time

import pytest

from lab import scenarios
from lab.cluster import Lab
from tests.lab_fixtures import dev_lab, journals

pytestmark = pytest.mark.lab
__all__ = ["dev_lab"]
WATCH = 25.0
"""Several reconcile periods (5 s in the tests)."""


def _state(lab: Lab, name: str) -> str:
    raw = json.loads(lab.droplets[name].path("/run/ha-web/state.json").read_text())
    return str(raw["state"])


def test_partition_settles_on_one_node_and_heals_to_one_master(dev_lab: Lab) -> None:
    lab = dev_lab
    scenarios.ensure_steady(lab)
    started = time.time()
    lab.topology.partition(True)
    try:
        lab.wait_for(
            lambda: _state(lab, lab.spec.backup) == "MASTER", 15, "the backup to go MASTER"
        )
        time.sleep(WATCH)
        assigns = [c for c in lab.emulator.calls("POST", "/v2/reserved_ips/*") if c.time > started]
        assert len(assigns) <= 3, journals(lab)
        settled = lab.holder()
        assert settled in (lab.spec.primary, lab.spec.backup)
        quiet_since = time.time() - 10
        assert not [c for c in assigns if c.time > quiet_since], "the IP still moves"
        assert lab.serving(settled or "")
    finally:
        lab.topology.partition(False)
    lab.wait_for(
        lambda: _state(lab, lab.spec.backup) == "BACKUP", 15, "the backup to hear the primary"
    )
    lab.wait_for(lambda: lab.holder() == lab.spec.primary, 20, "the primary to hold the IP")
    assert [_state(lab, n) for n in (lab.spec.primary, lab.spec.backup)] == ["MASTER", "BACKUP"]
