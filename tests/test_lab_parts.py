"""The lab's parts that need no root: unit files, boot order, cloud-init's command forms,
finding and ending a unit's processes, the report tables and the benchmark's statistics.
(The lab itself is tested by the `lab`-marked tests.)"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from lab import bench_report, unit_files
from lab.bench import Run
from lab.cloud_config import shellify, useradd_argv
from lab.reaper import alive
from lab.report import table
from lab.scenarios import Result
from lab.service_manager import Manager, Service, boot_order
from lab.spec import SpecError, from_user_data
from lab.unit_processes import members, session_of, stop_signals

PEERS_UNIT = """[Unit]
Wants=network-online.target
After=network-online.target \\
  ha-web-firewall.service
[Service]
Type=oneshot
ExecStart=/usr/local/bin/ha-web-agent peers
ExecStartPost=+/usr/local/bin/ha-web-agent apply-peers
"""


def test_unit_parsing_joins_continuations_and_empty_assignment_resets_a_list() -> None:
    sections = unit_files.parse(PEERS_UNIT)
    unit = unit_files.Unit("ha-web-peers.service", Path("/x"), sections)
    assert unit.words("Unit", "After") == ["network-online.target", "ha-web-firewall.service"]
    unit_files.parse("[Service]\nExecStart=\nExecStart=/bin/true\n", sections)
    assert sections["Service"]["ExecStart"] == ["/bin/true"]


def test_exec_prefixes_and_variables_follow_systemd() -> None:
    env = {"KEEPALIVED_OPTIONS": "-D -S 1", "MAINPID": "42"}
    command = unit_files.command("+/usr/sbin/keepalived --dont-fork $KEEPALIVED_OPTIONS", env)
    assert command.argv == ("/usr/sbin/keepalived", "--dont-fork", "-D", "-S", "1")
    assert command.as_root and not command.ignore_failure
    stop = unit_files.command("-/bin/kill -HUP ${MAINPID}", env)
    assert stop.argv == ("/bin/kill", "-HUP", "42") and stop.ignore_failure
    nginx = unit_files.command("/usr/sbin/nginx -g 'daemon on; master_process on;'", env)
    assert nginx.argv[-1] == "daemon on; master_process on;"


def test_time_spans_read_like_systemd_and_bad_ones_say_how_to_write_them() -> None:
    assert unit_files.seconds("1min 30s", 0) == 90
    assert unit_files.seconds("500ms", 0) == 0.5
    assert unit_files.seconds("", 7) == 7
    with pytest.raises(unit_files.UnitError, match="5s or 500ms"):
        unit_files.seconds("soon", 0)


def test_drop_ins_extend_the_main_unit(tmp_path: Path) -> None:
    (tmp_path / "keepalived.service").write_text("[Unit]\nAfter=network-online.target\n")
    (tmp_path / "keepalived.service.d").mkdir()
    (tmp_path / "keepalived.service.d/ha-web.conf").write_text(
        "[Unit]\nAfter=ha-web-peers.service\n"
    )
    unit = unit_files.load("keepalived.service", [tmp_path])
    assert unit.words("Unit", "After") == ["network-online.target", "ha-web-peers.service"]


def test_boot_order_starts_early_units_first_and_honours_after(tmp_path: Path) -> None:
    units = {
        "keepalived.service": "[Unit]\nAfter=ha-web-peers.service\n",
        "ha-web-peers.service": "[Unit]\nAfter=ha-web-firewall.service\n",
        "ha-web-firewall.service": "[Unit]\nDefaultDependencies=no\n",
        "nginx.service": "[Unit]\n",
    }
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    order = boot_order(sorted(units), [tmp_path])
    assert order[0] == "ha-web-firewall.service"
    assert order.index("ha-web-peers.service") < order.index("keepalived.service")


def test_shellify_quotes_lists_and_keeps_strings_as_cloud_init_does() -> None:
    script = shellify([["nft", "add table inet t { }"], "echo $HOME"])
    assert script == "nft 'add table inet t { }'\necho $HOME\n"


def test_useradd_gets_the_flags_cloud_init_passes_for_a_system_user() -> None:
    entry = {"name": "ha-web", "system": True, "shell": "/usr/sbin/nologin", "no_create_home": True}
    assert useradd_argv(entry) == [
        "useradd", "ha-web", "--shell", "/usr/sbin/nologin", "--system", "-M",
    ]  # fmt: skip


def test_user_data_without_agent_settings_is_refused_with_a_reason(tmp_path: Path) -> None:
    files = [tmp_path / "a.yaml", tmp_path / "b.yaml"]
    for path in files:
        path.write_text("#cloud-config\nwrite_files: []\n")
    with pytest.raises(SpecError, match=r"agent\.json"):
        from_user_data(files)


def test_report_table_shows_each_scenario_and_why_it_failed() -> None:
    good = Result("steady", "1. steady state", 0, 5, None, None, "a", "a", None, None, 100, 0, 2, 0)
    bad = Result(
        "crash", "3. crash", 0, 9, 1, 4, "a", "b", 3.0, None, 180, 6, 9, 1, ["failback: timed out"]
    )
    rendered = table([good, bad])
    assert "1. steady state" in rendered and "0/100" in rendered
    assert "NO: failback: timed out" in rendered and "3.00" in rendered and "never" in rendered
    assert "IP moved (s)" in rendered and "failed in failback" in rendered


def test_stop_commands_get_the_result_and_how_the_main_process_ended() -> None:
    svc = Service(unit_files.Unit("nginx.service", Path("/x")))
    assert Manager._result_env(svc, "success") == {"SERVICE_RESULT": "success"}
    svc.exit = ("killed", "KILL")
    assert Manager._result_env(svc, "signal") == {
        "SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL",
    }  # fmt: skip


def test_a_units_workers_are_found_by_session_after_their_parent_died_and_killed() -> None:
    # Like nginx: a session leader with workers; the leader is SIGKILLed, the workers stay.
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 60 & sleep 60 & echo ready; wait"],
        start_new_session=True, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert leader.stdout is not None and leader.stdout.readline() == "ready\n"
        session = session_of(leader.pid)
        assert session == leader.pid
        workers = [p for p in members({session}, None) if p != leader.pid]
        assert len(workers) == 2
        leader.kill()
        leader.wait()
        assert members({session}, None) == workers
        # KillMode=mixed with the main process gone: the rest of the unit is SIGKILLed at once.
        started = time.monotonic()
        stop_signals("mixed", None, lambda: members({session}, None), timeout=10)
        assert time.monotonic() - started < 2
        assert not any(alive(p) for p in workers)
    finally:
        for pid in members({leader.pid}, None):
            os.kill(pid, 9)
        leader.kill()
        leader.wait()


def _run(index: int, served: float, failed: int) -> Run:
    run = Run("nginx", index, "b", fault_at=100.0, detect_at=100.1, master_at=100.2)
    run.assign_at, run.routed_at, run.served_at = 100.25, 100.26, 100.0 + served
    run.failed, run.api_calls = failed, 2
    return run


def test_bench_statistics_are_median_nearest_rank_p90_and_max() -> None:
    runs = [_run(i, served, 0) for i, served in enumerate([0.3, 0.1, 0.2, 0.5, 0.4], 1)]
    assert bench_report.summary(runs, "served") == pytest.approx(
        {"median": 0.3, "p90": 0.5, "max": 0.5, "missing": 0}
    )
    assert bench_report.nearest_rank([float(n) for n in range(1, 11)], 0.9) == 9.0
    metrics = runs[0].metrics()
    assert metrics["detect_to_assign"] == pytest.approx(0.15)
    assert metrics["master_to_assign"] == pytest.approx(0.05)


def test_bench_tables_flag_missing_points_and_unmet_targets() -> None:
    slow = _run(1, 1.4, 3)
    lost = Run("nginx", 2, "b", fault_at=100.0, problems=["timed out"])
    results = {"nginx": [slow, lost]}
    rendered = bench_report.table(results)
    assert "nginx stopped on the master" in rendered and "(1 missing)" in rendered
    targets = bench_report.targets_table(results)
    nginx = next(line for line in targets.splitlines() if "≤ 1.0 s" in line)
    assert nginx.split()[-3:] == ["1.4", "NOT", "MET"]
    assert bench_report.problems(results) == ["nginx #2: timed out"]
