"""The drill's scenarios: the IP ends on the right node, service comes back in time, and
failback happens exactly when `failback` is on."""

from __future__ import annotations

import pytest

from lab import netns, scenarios
from lab.cluster import Lab
from lab.droplet import Droplet
from lab.state import start_time
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
    assert result.moved_seconds is not None and result.moved_seconds <= bound
    if lab.spec.failback:
        assert result.failback_seconds is not None and result.failback_seconds <= bound + 5
    # The backup serves until the recovered primary holds the IP: a failback loses nothing.
    assert result.failback_failed == 0, journals(lab)


def _macs(droplet: Droplet) -> list[str]:
    shown = netns.run(droplet.netns, ["ip", "-br", "link", "show", "type", "veth"]).stdout
    return sorted(line.split()[2] for line in shown.splitlines())


def test_steady_state_serves_from_the_primary_without_failures(dev_lab: Lab) -> None:
    result = scenarios.steady_state(dev_lab, seconds=3)
    assert result.failed == 0 and result.requests > 30
    assert result.holder == dev_lab.spec.primary


def test_stopping_nginx_fails_over_and_back(dev_lab: Lab) -> None:
    _check(dev_lab, scenarios.stop_nginx(dev_lab))


def test_crashing_the_primary_fails_over_and_back_after_reboot(dev_lab: Lab) -> None:
    primary = dev_lab.droplets[dev_lab.spec.primary]
    # A process that ended between the listing and the read (a timer's run) has no start time.
    before = {(pid, started) for pid in primary.pids() if (started := start_time(pid)) is not None}
    assert len(before) > 5, before  # systemd, journald, nginx, keepalived, ...
    boots = len(primary.run(["journalctl", "--list-boots", "--no-pager"]).stdout.splitlines())
    macs = _macs(primary)
    _check(dev_lab, scenarios.crash_primary(dev_lab))
    # A reboot keeps a droplet's NICs: its peers' neighbour caches stay right.
    assert _macs(primary) == macs and len(macs) == 2
    # By (pid, start time): a PID namespace's inode number may be reused by the reboot's.
    survivors = [(pid, started) for pid, started in before if start_time(pid) == started]
    assert survivors == [], "processes of the crashed boot outlived its init"
    # The reboot found the disk the crash left: one more boot in the same journal.
    after = primary.run(["journalctl", "--list-boots", "--no-pager"]).stdout.splitlines()
    assert len(after) == boots + 1, after


def test_killing_keepalived_fails_over_and_back(dev_lab: Lab) -> None:
    _check(dev_lab, scenarios.kill_keepalived(dev_lab))


@pytest.mark.parametrize("user", [None, "ha-web"], ids=["as root", "as ha-web"])
def test_planned_switchover_and_its_return_lose_no_request(dev_lab: Lab, user: str | None) -> None:
    lab = dev_lab
    result = scenarios.planned_switchover(lab, user)
    _check(lab, result)
    assert result.failed == 0 and result.requests > 50
    assert result.fault_at is not None and result.recover_at is not None
    events = [e for e in lab.events if result.fault_at <= e.time <= result.recover_at]
    done = next(e for e in events if e.text.startswith("maintenance on returned 0"))
    routed = next(e for e in events if e.kind == "route" and lab.spec.backup in e.text)
    assert routed.time < done.time, "`maintenance on` said done before the IP moved"
    after_done = lab.samples(done.time, result.recover_at)
    assert after_done and {s.node for s in after_done} == {lab.spec.backup}


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
