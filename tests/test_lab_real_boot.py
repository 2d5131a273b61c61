"""The lab on real droplets (`Lab(real_boot=True)`): a dev-stack pair booted under
systemd-nspawn with real systemd and cloud-init, each building keepalived from the tarball
the emulator serves. The primary serves through the reserved IP; stopping its nginx, or
crashing it (SIGKILL to the container's init), moves the IP to the backup, and the IP
comes back when it recovers (failback is on in the dev stack).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import scenarios
from lab.booted_droplet import BootedDroplet
from lab.cluster import Lab, LabError
from lab.droplet_init import BOOTED
from lab.nspawn import CgroupHome
from lab.spec import from_stack
from lab.state import leftovers, snapshot, start_time
from tests.lab_fixtures import FAST_TIMERS

pytestmark = pytest.mark.lab

SERVE_BOUND = 60.0
"""Seconds from the end of both boots until the primary answers through the reserved IP."""
SLACK = 10.0
"""Seconds allowed over the emulated action latency for a failover or a failback."""


def _own_leftovers(lab: Lab) -> list[str]:
    """What a real droplet leaves on the host that the lab's snapshot does not look at."""
    found = []
    for droplet in lab.droplets.values():
        machine = droplet.netns
        found += [f"cgroup {d}" for d in CgroupHome(machine).dirs if d.exists()]
        propagate = Path("/run/systemd/nspawn/propagate", machine)
        found += [str(propagate)] if propagate.exists() else []
    return found


@pytest.fixture(scope="module")
def real_lab() -> Iterator[Lab]:
    before = snapshot()
    lab = Lab(from_stack("dev", FAST_TIMERS), 0.0, echo=print, real_boot=True)
    try:
        lab.start()
        try:
            lab.wait_serving(lab.spec.primary, SERVE_BOUND)
        except LabError as error:
            raise AssertionError(_journals(lab)) from error
        yield lab
    finally:
        try:
            lab.close()
        finally:
            assert _own_leftovers(lab) == []
    assert leftovers(before) == []


def _journals(lab: Lab) -> str:
    return "\n".join(f"===== {n}\n{d.journal()[-6000:]}" for n, d in lab.droplets.items())


def _check(lab: Lab, result: scenarios.Result) -> None:
    bound = lab.emulator.action_latency + SLACK
    assert result.problems == [], _journals(lab)
    assert result.holder == result.expected_holder == lab.spec.primary
    assert result.moved_seconds is not None and result.moved_seconds <= bound
    assert result.restore_seconds is not None and result.restore_seconds <= bound
    assert result.failback_seconds is not None and result.failback_seconds <= bound + 5


def test_a_real_pair_boots_with_systemd_and_the_primary_serves(real_lab: Lab) -> None:
    assert real_lab.holder() == real_lab.spec.primary
    for droplet in real_lab.droplets.values():
        assert isinstance(droplet, BootedDroplet)
        said = [line.text for line in droplet.boot_lines]
        assert said[-1] == BOOTED, said  # no cloud-init error in any stage
        assert any("real boot: Debian bookworm under systemd-nspawn" in s for s in said), said
        assert any("the emulator serves Debian's orig tarball" in s for s in said), said
        init = droplet.run(["readlink", "/proc/1/exe"]).stdout.strip()
        assert init == "/usr/lib/systemd/systemd", init
        active = droplet.systemctl("is-active", "keepalived.service", "nginx.service")
        assert active.stdout.split() == ["active", "active"], droplet.journal()[-3000:]


def test_stopping_nginx_on_the_primary_moves_the_ip_to_the_backup_and_back(
    real_lab: Lab,
) -> None:
    result = scenarios.stop_nginx(real_lab)
    _check(real_lab, result)
    assert real_lab.serving(real_lab.spec.primary)


def test_crashing_the_primary_moves_the_ip_and_its_reboot_takes_it_back(real_lab: Lab) -> None:
    primary = real_lab.droplets[real_lab.spec.primary]
    before = {(pid, start_time(pid)) for pid in primary.pids()}
    assert len(before) > 5, before  # systemd, journald, nginx, keepalived, ...
    result = scenarios.crash_primary(real_lab)
    _check(real_lab, result)
    # By (pid, start time): a namespace's inode number may be reused by the reboot's.
    survivors = [(pid, started) for pid, started in before if start_time(pid) == started]
    assert survivors == [], "processes of the crashed boot outlived its init"
    # The reboot found the disk the crash left: a second boot in the same journal.
    boots = primary.run(["journalctl", "--list-boots", "--no-pager"]).stdout.splitlines()
    assert len(boots) == 3, boots  # the header and two boots
