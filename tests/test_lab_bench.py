"""`python -m lab bench --runs 1` works end to end: a proof for CI, not a timed assertion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.bench import SCENARIOS
from lab.bench_report import METRICS, PATH_METRICS
from lab.droplet import REPO
from lab.state import leftovers, snapshot

pytestmark = pytest.mark.lab


def test_short_bench_reports_every_scenario_and_metric_and_leaves_nothing(tmp_path: Path) -> None:
    before = snapshot()
    done = subprocess.run(
        [sys.executable, "-m", "lab", "bench", "--runs", "1", "--report-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert leftovers(before) == []
    for scenario in SCENARIOS:
        assert scenario.title in done.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["command"].startswith("python -m lab bench --runs 1")
    assert report["action_latency"] == 0
    assert report["keepalived"].startswith("Keepalived v2.3.4")
    assert {"cpu_model", "cores", "kernel"} <= set(report["machine"])
    assert {"advert_int", "health_interval", "health_fall", "health_rise"} <= set(
        report["settings"]
    )
    assert [s["key"] for s in report["scenarios"]] == [s.key for s in SCENARIOS]
    for scenario in report["scenarios"]:
        assert scenario["runs"] == 1
        for metric in [*METRICS, *PATH_METRICS]:
            stats = scenario["metrics"][metric]
            assert stats["median"] is not None and stats["missing"] == 0, (scenario, metric)
    assert {t["scenario"] for t in report["targets"]} == {s.key for s in SCENARIOS}
    assert (tmp_path / "journals").is_dir()
