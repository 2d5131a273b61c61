"""nginx's drop-in tells keepalived at once that nginx stopped: systemd runs ExecStopPost=
after a `systemctl stop` and after the main process is killed."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from lab import scenarios
from lab.bench import systemd_job
from lab.cluster import Lab
from lab.droplet import Droplet
from lab.journal_lines import KEEPALIVED_STATE, stamp
from tests.lab_fixtures import dev_lab, journals

pytestmark = pytest.mark.lab
__all__ = ["dev_lab"]
NGINX_DOWN = "/run/ha-web-root/nginx-down"
EVENT_BOUND = 1.0
"""Seconds from the fault to keepalived's FAULT: 0.5 s, plus noise on a busy 2-core machine.
The fault is when systemd began the stop (its "Stopping" line), or the kill. The assertions
also check that the track file, not the health check (2 failures 0.5 s apart), caused the
FAULT."""
TRACKED = "tracked file ha_web_nginx_down now FAULT state"


def _after(droplet: Droplet, since: float) -> list[str]:
    return [line for line in droplet.journal().splitlines() if (stamp(line) or 0) >= since]


def _fault_at(line: str) -> float | None:
    match = KEEPALIVED_STATE.match(line)
    return float(match[1]) if match and match[2] == "FAULT" else None


def _unit(droplet: Droplet, unit: str) -> dict[str, str]:
    shown = droplet.systemctl("show", "-p", "ActiveState,Result,NRestarts", unit).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def _fault_seconds(lab: Lab, droplet: Droplet, since: float) -> float:
    def faulted() -> bool:
        return any(_fault_at(line) for line in _after(droplet, since))

    lab.wait_for(faulted, 10, f"keepalived on {droplet.name} to enter FAULT")
    lines = _after(droplet, since)
    at = next(t for line in lines if (t := _fault_at(line)))
    before = [line for line in lines if (stamp(line) or 0) <= at]
    assert any(TRACKED in line for line in before), "\n".join(lines)
    assert not any("VRRP_Script(chk_nginx) failed" in line for line in before), "\n".join(lines)
    return at - since


def _fails_over_at_once(lab: Lab, fault: Callable[[Droplet], float]) -> Droplet:
    scenarios.ensure_steady(lab)
    primary = lab.droplets[lab.spec.primary]
    assert primary.path(NGINX_DOWN).read_text().strip() == "0"
    seconds = _fault_seconds(lab, primary, fault(primary))
    assert seconds <= EVENT_BOUND, journals(lab)
    assert primary.path(NGINX_DOWN).read_text().strip() == "1"
    lab.wait_serving(lab.spec.backup, 10)
    return primary


def _start_nginx_again(lab: Lab, primary: Droplet) -> None:
    assert primary.systemctl("start", "nginx.service").returncode == 0
    assert primary.path(NGINX_DOWN).read_text().strip() == "0"
    scenarios.ensure_steady(lab)


def test_stopping_nginx_writes_nginx_down_and_keepalived_faults_at_once(dev_lab: Lab) -> None:
    def stop(primary: Droplet) -> float:
        return systemd_job(dev_lab, primary, "stop", "nginx.service")

    primary = _fails_over_at_once(dev_lab, stop)
    shown = _unit(primary, "nginx.service")
    assert (shown["ActiveState"], shown["Result"]) == ("inactive", "success"), shown
    _start_nginx_again(dev_lab, primary)


def test_sigkill_of_nginx_master_writes_nginx_down_and_kills_its_workers(dev_lab: Lab) -> None:
    def kill_master(primary: Droplet) -> float:
        main = primary.systemctl("show", "-p", "MainPID", "--value", "nginx.service").stdout.strip()
        assert main not in ("", "0")
        killed = time.time()
        assert primary.run(["kill", "-KILL", main]).returncode == 0
        return killed

    primary = _fails_over_at_once(dev_lab, kill_master)
    # KillMode=mixed: once the master is gone, systemd SIGKILLs the rest of the unit (and
    # reaps them as their new parent: wait for that, not for the kill).
    dev_lab.wait_for(lambda: primary.pids("nginx") == [], 10, "nginx's workers to be gone")
    shown = _unit(primary, "nginx.service")
    assert (shown["ActiveState"], shown["Result"], shown["NRestarts"]) == ("failed", "signal", "0")
    assert "nginx.service: Main process exited, code=killed, status=9/KILL" in primary.journal()
    _start_nginx_again(dev_lab, primary)
