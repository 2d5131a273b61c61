"""The drill's scenarios: the IP ends on the right node, service comes back in time, and
failback happens exactly when `failback` is on."""

from __future__ import annotations

import pytest

from lab import scenarios
from lab.cluster import Lab
from tests.lab_fixtures import MakeLab, dev_lab, journals, make_lab

pytestmark = pytest.mark.lab
__all__ = ["dev_lab", "make_lab"]
SLACK = 10.0
"""Seconds allowed over the emulated action latency (the machine is noisy)."""


def _check(lab: Lab, result: scenarios.Result) -> None:
    bound = lab.emulator.action_latency + SLACK
    assert result.problems == [], journals(lab)
    assert result.holder == result.expected_holder
    assert result.restore_seconds is not None and result.restore_seconds <= bound
    if lab.spec.failback:
        assert result.failback_seconds is not None and result.failback_seconds <= bound + 5


def test_steady_state_serves_from_the_primary_without_failures(dev_lab: Lab) -> None:
    result = scenarios.steady_state(dev_lab, seconds=3)
    assert result.failed == 0 and result.requests > 30
    assert result.holder == dev_lab.spec.primary


def test_stopping_nginx_fails_over_and_back(dev_lab: Lab) -> None:
    _check(dev_lab, scenarios.stop_nginx(dev_lab))


def test_crashing_the_primary_fails_over_and_back_after_reboot(dev_lab: Lab) -> None:
    _check(dev_lab, scenarios.crash_primary(dev_lab))


def test_killing_keepalived_fails_over_and_back(dev_lab: Lab) -> None:
    _check(dev_lab, scenarios.kill_keepalived(dev_lab))


def test_with_failback_off_the_recovered_primary_stays_backup(make_lab: MakeLab) -> None:
    # With nopreempt, whichever node is MASTER first keeps it: boot the primary first.
    lab = make_lab({"failback": False}, boot=False)
    lab.boot([lab.spec.primary])
    lab.wait_serving(lab.spec.primary, 60)
    lab.boot([lab.spec.backup])
    result = scenarios.stop_nginx(lab)
    assert result.expected_holder == lab.spec.backup
    _check(lab, result)
    assert lab.serving(lab.spec.backup)
