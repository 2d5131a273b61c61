"""nginx's drop-in tells keepalived at once that nginx stopped: the lab's systemd runs
ExecStopPost= after a `systemctl stop` and after the main process is killed, as systemd does."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from lab import scenarios
from lab.cluster import Lab
from lab.droplet import Droplet
from tests.lab_fixtures import dev_lab, journals

pytestmark = pytest.mark.lab
__all__ = ["dev_lab"]
NGINX_DOWN = "/run/ha-web-root/nginx-down"
EVENT_BOUND = 1.0
"""Seconds from the fault to keepalived's FAULT: 0.5 s, plus noise on a busy 2-core machine.
The fault is when systemd began the stop (or the kill): the lab's systemctl client alone
takes about 0.1 s to start. The assertions also check that the track file, not the health
check (2 failures 0.5 s apart), caused the FAULT."""
FAULT_LINE = re.compile(r"^(\d+\.\d+) Keepalived_vrrp\[\d+\]: \(ha_web\) Entering FAULT STATE")
TRACKED = "tracked file ha_web_nginx_down now FAULT state"


def _after(droplet: Droplet, since: float) -> list[str]:
    return [
        line for line in droplet.journal().splitlines() if float(line.split(" ", 1)[0]) >= since
    ]


def _fault_seconds(lab: Lab, droplet: Droplet, since: float) -> float:
    def faulted() -> bool:
        return any(FAULT_LINE.match(line) for line in _after(droplet, since))

    lab.wait_for(faulted, 10, f"keepalived on {droplet.name} to enter FAULT")
    lines = _after(droplet, since)
    at = next(float(m[1]) for line in lines if (m := FAULT_LINE.match(line)))
    before = [line for line in lines if float(line.split(" ", 1)[0]) <= at]
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
        asked = time.time()
        assert primary.systemctl("stop", "nginx.service").returncode == 0
        began = [
            line
            for line in _after(primary, asked)
            if "nginx.service: active -> deactivating" in line
        ]
        assert began, primary.journal()[-3000:]
        return float(began[0].split(" ", 1)[0])

    primary = _fails_over_at_once(dev_lab, stop)
    assert "inactive (success)" in primary.systemctl("status", "nginx.service").stdout
    _start_nginx_again(dev_lab, primary)


def test_sigkill_of_nginx_master_writes_nginx_down_and_kills_its_workers(dev_lab: Lab) -> None:
    def kill_master(primary: Droplet) -> float:
        main = primary.systemctl("show-main-pid", "nginx.service").stdout.strip()
        assert main not in ("", "0")
        killed = time.time()
        assert primary.run(["kill", "-KILL", main]).returncode == 0
        return killed

    primary = _fails_over_at_once(dev_lab, kill_master)
    # KillMode=mixed: once the master is gone, systemd SIGKILLs the rest of the unit.
    assert primary.pids("nginx") == []
    status = primary.systemctl("status", "nginx.service").stdout
    assert "failed (signal)" in status and "0 automatic restarts" in status
    assert "nginx.service: main process exited, code=killed, status=9/KILL" in primary.journal()
    _start_nginx_again(dev_lab, primary)
