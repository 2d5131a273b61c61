"""The lab's service manager finds a forking daemon's processes and reads its PID file the way
nginx writes them. No root needed: the manager runs in a child process of its own, because it
makes itself a subreaper that reaps every child, which would upset pytest's own subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lab import service_manager, unit_files
from lab.journal import Journal
from lab.service_manager import Manager, Service

ROOT = Path(__file__).resolve().parent.parent

# nginx 1.22's starter, as `strace -f` shows it: fork, write the child's pid to the PID file,
# exit; the child calls setsid() only later, then forks its workers into its new session. The
# child waits for ExecStartPost= to open the gate, so the manager always reads the PID file,
# and the main process's session, before the setsid: the window nginx leaves open by ~3 ms.
DAEMON = """\
import os, sys, time
work = sys.argv[1]
daemon = os.fork()
if daemon:
    with open(f"{work}/daemon.pid", "w") as pid_file:
        pid_file.write(f"{daemon}\\n")
    os._exit(0)
with open(f"{work}/gate") as gate:
    gate.read()
os.setsid()
workers = []
for _ in range(2):
    worker = os.fork()
    if worker == 0:
        time.sleep(60)  # bounded, so a failed run leaks nothing for long
        os._exit(0)
    workers.append(worker)
with open(f"{work}/workers.tmp", "w") as listing:
    listing.write(" ".join(map(str, workers)))
os.rename(f"{work}/workers.tmp", f"{work}/workers")
time.sleep(60)
"""

UNIT = """\
[Service]
Type=forking
PIDFile={work}/daemon.pid
ExecStart={python} {work}/daemon.py {work}
ExecStartPost=/bin/sh -c 'echo go > {work}/gate'
KillMode=mixed
"""

# Starts the unit, SIGKILLs its main process as the lab test does to nginx's master, waits
# for the manager to finish the unit's stop path, and reports which workers it left alive.
DRIVER = """\
import json, os, signal, sys, time
from pathlib import Path
from lab import unit_files
from lab.journal import Journal
from lab.reaper import Reaper, alive
from lab.service_manager import Manager, Service

work = Path(sys.argv[1])
unit = unit_files.Unit("forking.service", work / "forking.service")
unit_files.parse((work / "forking.service").read_text(), unit.sections)
manager = Manager(Reaper(), Journal(work / "journal.log"))
svc = manager.services[unit.name] = Service(unit)
workers: list[int] = []


def wait_for(condition, what):
    deadline = time.monotonic() + 20
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


try:
    assert manager.start(unit.name), (work / "journal.log").read_text()
    wait_for((work / "workers").exists, "the workers")
    workers = [int(p) for p in (work / "workers").read_text().split()]
    assert svc.main is not None
    os.kill(svc.main, signal.SIGKILL)
    wait_for(lambda: svc.state == "failed", "the unit to fail")
    print(json.dumps({"result": svc.result, "left": [p for p in workers if alive(p)]}))
finally:
    for pid in workers:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
"""


def test_killing_a_forking_main_that_called_setsid_after_its_pid_file_kills_its_workers(
    tmp_path: Path,
) -> None:
    os.mkfifo(tmp_path / "gate")
    (tmp_path / "daemon.py").write_text(DAEMON)
    (tmp_path / "forking.service").write_text(UNIT.format(work=tmp_path, python=sys.executable))
    (tmp_path / "driver.py").write_text(DRIVER)
    run = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path)],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    journal_file = tmp_path / "journal.log"
    journal = journal_file.read_text() if journal_file.exists() else ""
    assert run.returncode == 0, run.stderr + journal
    report = json.loads(run.stdout)
    assert report == {"result": "signal", "left": []}, journal


def _manager(tmp_path: Path) -> Manager:
    # Reading a PID file needs neither the reaper nor a subreaper.
    return Manager(reaper=None, journal=Journal(tmp_path / "journal.log"))  # type: ignore[arg-type]


@pytest.mark.parametrize("content", ["", "\n", "nginx\n", "-1\n", "0\n"])
def test_an_empty_or_garbage_pid_file_is_no_pid_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    # `nginx -t` leaves an empty PID file behind; the daemon has not written its pid yet.
    monkeypatch.setattr(service_manager, "PID_FILE_TIMEOUT", 0.2)
    pid_file = tmp_path / "daemon.pid"
    pid_file.write_text(content)
    unit = unit_files.Unit("forking.service", tmp_path / "forking.service")
    unit_files.parse(f"[Service]\nPIDFile={pid_file}\n", unit.sections)
    assert _manager(tmp_path)._read_pid_file(unit) is None
    assert "names no running process" in (tmp_path / "journal.log").read_text()


def test_the_pid_file_is_read_once_the_daemon_has_written_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    pid_file.write_text("")
    unit = unit_files.Unit("forking.service", tmp_path / "forking.service")
    unit_files.parse(f"[Service]\nPIDFile={pid_file}\n", unit.sections)
    manager = _manager(tmp_path)
    read: list[int | None] = []
    reader = threading.Thread(target=lambda: read.append(manager._read_pid_file(unit)))
    reader.start()
    pid_file.write_text(f"{os.getpid()}\n")
    reader.join(10)
    assert read == [os.getpid()]


def test_a_session_recorded_while_ended_sessions_are_scanned_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another unit's thread spawns a command (a new session) while this scan of /proc runs:
    # the scan cannot have seen that session, so it must not count as ended.
    manager = _manager(tmp_path)
    svc = manager.services["a.service"] = Service(unit_files.Unit("a.service", Path("/x")))
    ended, fresh = 111, 222
    svc.sessions = {ended}

    def scan() -> set[int]:
        svc.sessions.add(fresh)
        return set()

    monkeypatch.setattr(service_manager, "live_sessions", scan)
    manager._forget_ended_sessions()
    assert svc.sessions == {fresh}
