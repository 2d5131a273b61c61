"""Partitions of the private network: the IP settles without ping-pong, and heals to one MASTER."""

from __future__ import annotations

import json
import time

import pytest

from lab import scenarios
from lab.cluster import Lab
from tests.lab_fixtures import RECONCILE, dev_lab, journals, wait_runs

pytestmark = pytest.mark.lab
__all__ = ["dev_lab"]
WATCH_RUNS = 5
"""Reconcile runs on each node to watch a partition for: each is a chance to move the IP."""
WHOLE_CUT_RUNS = 6
"""Reconcile runs on each node while the whole VPC is cut: a ping-pong moved the IP every
3-7 s with the tests' 5 s timers."""


def _watch(lab: Lab, since: float, runs: int) -> None:
    for droplet in lab.droplets.values():
        wait_runs(lab, droplet, RECONCILE, since, runs)


def _state(lab: Lab, name: str) -> str:
    raw = json.loads(lab.droplets[name].path("/run/ha-web/state.json").read_text())
    return str(raw["state"])


def _masters(lab: Lab) -> list[str]:
    return [n for n in lab.droplets if _state(lab, n) == "MASTER"]


def _assign_times(lab: Lab, start: float, end: float) -> list[float]:
    return [
        c.time
        for c in lab.emulator.calls("POST", "/v2/reserved_ips/*")
        if start <= c.time < end and c.status < 300
    ]


def test_vrrp_partition_settles_on_one_node_and_heals_to_one_master(dev_lab: Lab) -> None:
    lab = dev_lab
    scenarios.ensure_steady(lab)
    started = time.time()
    lab.topology.partition(True)
    try:
        lab.wait_for(
            lambda: _state(lab, lab.spec.backup) == "MASTER", 15, "the backup to go MASTER"
        )
        _watch(lab, time.time(), WATCH_RUNS)
        assigns = _assign_times(lab, started, time.time())
        assert len(assigns) <= 1, journals(lab)
        settled = lab.holder()
        assert settled in (lab.spec.primary, lab.spec.backup)
        quiet_since = time.time() - 10
        assert not [t for t in assigns if t > quiet_since], "the IP still moves"
        assert lab.serving(settled or "")
    finally:
        lab.topology.partition(False)
    lab.wait_for(
        lambda: _state(lab, lab.spec.backup) == "BACKUP", 15, "the backup to hear the primary"
    )
    lab.wait_for(lambda: lab.holder() == lab.spec.primary, 20, "the primary to hold the IP")
    assert [_state(lab, n) for n in (lab.spec.primary, lab.spec.backup)] == ["MASTER", "BACKUP"]


def test_whole_vpc_cut_moves_the_ip_at_most_once_and_the_site_keeps_answering(
    dev_lab: Lab,
) -> None:
    """Both nodes still reach the API and each other's public address: the lower-priority
    MASTER must judge the holder over that path, not over the cut VPC."""
    lab = dev_lab
    scenarios.ensure_steady(lab)
    started = time.time()
    lab.topology.partition(True, whole=True)
    try:
        lab.wait_for(
            lambda: _state(lab, lab.spec.backup) == "MASTER", 15, "the backup to go MASTER"
        )
        _watch(lab, started, WHOLE_CUT_RUNS)
    finally:
        healed = time.time()
        lab.topology.partition(False)
    lab.client.settle(healed)
    assigns = _assign_times(lab, started, healed)
    assert len(assigns) <= 1, f"the IP moved {len(assigns)} times\n{journals(lab)}"
    assert not [t for t in assigns if t >= (started + healed) / 2], (
        f"the IP still moved in the second half of the cut\n{journals(lab)}"
    )
    failed = [s.time for s in lab.samples(started, healed) if s.node is None]
    answered = len(lab.samples(started, healed)) - len(failed)
    print(
        f"whole VPC cut {healed - started:.0f} s: {len(assigns)} move(s), "
        f"{len(failed)} failed, {answered} answered"
    )
    if assigns:
        window = (assigns[0] - 1.0, assigns[0] + scenarios.bound(lab))
        outside = [t for t in failed if not window[0] <= t <= window[1]]
        assert outside == [], f"requests failed away from the one move: {outside}"
    else:
        assert failed == [], f"{len(failed)} requests failed while the IP stayed put"

    lab.wait_for(lambda: len(_masters(lab)) == 1, 15, "one MASTER after the cut heals")
    master = _masters(lab)[0]
    lab.wait_for(lambda: lab.holder() == master, scenarios.bound(lab), f"{master} to hold the IP")
    lab.wait_serving(master, scenarios.bound(lab))
