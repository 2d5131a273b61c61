"""The lab's parts that need no root: reading user-data files, the report tables and the
benchmark's statistics. (The lab itself is tested by the `lab`-marked tests.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import bench_report
from lab.bench import Run
from lab.report import table
from lab.scenarios import Result
from lab.spec import KEEPALIVED_URL, SpecError, from_stack, from_user_data
from lab.topology import nic_mac


def test_user_data_without_agent_settings_is_refused_with_a_reason(tmp_path: Path) -> None:
    files = [tmp_path / "a.yaml", tmp_path / "b.yaml"]
    for path in files:
        path.write_text("#cloud-config\nwrite_files: []\n")
    with pytest.raises(SpecError, match=r"agent\.json"):
        from_user_data(files)


def _user_data_files(tmp_path: Path, settings: dict[str, str]) -> list[Path]:
    files = []
    for droplet in from_stack("dev", settings).droplets:
        files.append(tmp_path / f"{droplet.name}.yaml")
        files[-1].write_text(droplet.user_data)
    return files


def test_user_data_rendered_for_the_lab_runs_as_it_is(tmp_path: Path) -> None:
    spec = from_user_data(_user_data_files(tmp_path, {}))
    assert [d.name for d in spec.droplets] == ["ha-web-dev-0", "ha-web-dev-1"]


def test_user_data_whose_keepalived_download_the_lab_cannot_reach_is_refused(
    tmp_path: Path,
) -> None:
    away = {"keepalivedUrl": "https://keepalived.example/keepalived-2.3.4.tar.gz"}
    with pytest.raises(SpecError) as refused:
        from_user_data(_user_data_files(tmp_path, away))
    served = KEEPALIVED_URL.format(version="2.3.4")
    assert f"ha-web:keepalivedUrl={served}" in str(refused.value)
    assert "keepalived.example" in str(refused.value)


def test_report_table_shows_each_scenario_and_why_it_failed() -> None:
    good = Result("steady", "1. steady state", 0, 5, None, None, "a", "a", None, None, 100, 0, 2, 0)
    bad = Result(
        "crash", "3. crash", 0, 9, 1, 4, "a", "b", 3.0, None, 180, 6, 9, 1, ["failback: timed out"]
    )
    rendered = table([good, bad])
    assert "1. steady state" in rendered and "0/100" in rendered
    assert "NO: failback: timed out" in rendered and "3.00" in rendered and "never" in rendered
    assert "IP moved (s)" in rendered and "failed in failback" in rendered


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


def test_a_nic_mac_is_local_unicast_and_follows_only_from_its_address() -> None:
    assert nic_mac("10.10.0.2") == nic_mac("10.10.0.2") == "02:00:0a:0a:00:02"
    assert nic_mac("203.0.113.11") != nic_mac("203.0.113.12")
    first_octet = int(nic_mac("192.0.2.255").split(":")[0], 16)
    assert first_octet & 0b11 == 0b10  # locally administered, not multicast
