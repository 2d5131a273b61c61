"""The benchmark's report: statistics, tables for stdout, and bench-report/bench.json with
the machine, the keepalived build and the settings the runs used."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.bench import SCENARIOS, Run
from lab.cluster import Lab
from lab.spec import decode

METRICS = {
    "served": "fault → served (s)",
    "detect": "fault → detect (s)",
    "detect_to_assign": "detect → assign (s)",
    "failed": "failed requests",
    "api_calls": "API calls",
}
LEGEND = """\
served: the client's first answer from the new holder through the reserved IP (polls every 50 ms)
detect: the first VRRP state change a running node logs (keepalived's own log line, journal time)
assign: the new holder's assign call arriving at the emulated API (its call log)
failed requests: client requests (every 50 ms) from the fault to 1 s after the takeover that failed
API calls: DigitalOcean API calls the failover made in that window (the claim; for a switchover
  also the command's polls); calls of the agent's timers that fell in it are in bench.json"""
OTHER_METRICS = {"timer_calls": "API calls of the agent's timers that fell in the window"}
PATH_METRICS = {
    "detect": "fault → detect",
    "detect_to_master": "detect → MASTER",
    "master_to_assign": "MASTER → assign",
    "assign_to_routed": "assign → routed",
    "routed_to_served": "routed → served",
}
KEEPALIVED_SETTINGS = re.compile(
    r"^\s*(vrrp_version|advert_int|interval|timeout|fall|rise|priority|nopreempt)\b"
    r"(?:[ \t]+([^\s#]+))?"
)
RENAMED = {
    "interval": "health_interval",
    "timeout": "health_timeout",
    "fall": "health_fall",
    "rise": "health_rise",
}


@dataclass(frozen=True)
class Target:
    scenario: str
    metric: str
    limit: float
    text: str


TARGETS = [
    Target("nginx", "served", 1.0, "nginx stopped on master: service back in ≤ 1.0 s"),
    Target("crash", "served", 1.5, "master node crash: service back in ≤ 1.5 s"),
    Target("keepalived", "served", 1.5, "keepalived killed on master: service back in ≤ 1.5 s"),
    Target("failback", "failed", 0, "failback: 0 failed requests"),
    Target("switchover", "failed", 0, "planned switchover: 0 failed requests"),
    *(
        Target(key, "api_calls", 4, f"API calls per failover ({key}, no API faults) ≤ 4")
        for key in ("nginx", "crash", "keepalived")
    ),
]
"""The issue's targets; each is judged on the median, as the issue states them."""


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summary(runs: list[Run], metric: str) -> dict[str, float | int | None]:
    values = [v for r in runs if (v := r.metrics()[metric]) is not None]
    if not values:
        return {"median": None, "p90": None, "max": None, "missing": len(runs)}
    return {
        "median": statistics.median(values),
        "p90": nearest_rank(values, 0.9),
        "max": max(values),
        "missing": len(runs) - len(values),
    }


def _cell(stats: dict[str, float | int | None], count: bool) -> str:
    def show(value: float | int | None) -> str:
        if value is None:
            return "-"
        return f"{value:g}" if count else f"{value:.2f}"

    text = " / ".join(show(stats[k]) for k in ("median", "p90", "max"))
    return text + (f" ({stats['missing']} missing)" if stats["missing"] else "")


def _render(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def titles() -> dict[str, str]:
    return {s.key: s.title for s in SCENARIOS}


def table(results: dict[str, list[Run]]) -> str:
    """One row per scenario; each cell is median / p90 / max over the runs."""
    header = ("scenario", "runs", *METRICS.values())
    rows = [header]
    for key, runs in results.items():
        cells = [_cell(summary(runs, m), m in ("failed", "api_calls")) for m in METRICS]
        rows.append((titles()[key], str(len(runs)), *cells))
    return _render(rows)


def path_table(results: dict[str, list[Run]]) -> str:
    """Medians of each step from the fault to the first answer: where the time goes."""
    rows = [("scenario (medians, s)", *PATH_METRICS.values())]
    for key, runs in results.items():
        medians = [summary(runs, m)["median"] for m in PATH_METRICS]
        rows.append((titles()[key], *("-" if v is None else f"{v:.3f}" for v in medians)))
    return _render(rows)


def judged(results: dict[str, list[Run]]) -> list[tuple[Target, float | None, bool]]:
    verdicts = []
    for target in TARGETS:
        if target.scenario in results:
            median = summary(results[target.scenario], target.metric)["median"]
            verdicts.append((target, median, median is not None and median <= target.limit))
    return verdicts


def targets_table(results: dict[str, list[Run]]) -> str:
    rows = [("target", "median", "met")]
    for target, median, met in judged(results):
        shown = "-" if median is None else f"{median:.2f}".rstrip("0").rstrip(".")
        rows.append((target.text, shown, "met" if met else "NOT MET"))
    return _render(rows)


def problems(results: dict[str, list[Run]]) -> list[str]:
    return [
        f"{run.scenario} #{run.index}: {problem}"
        for runs in results.values()
        for run in runs
        for problem in run.problems
    ]


# -- what the runs ran on --


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
    }


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip('"')
    return platform.system()


def keepalived_version(lab: Lab) -> str:
    result = lab.droplets[lab.spec.primary].run(["/usr/sbin/keepalived", "--version"])
    return (result.stdout + result.stderr).strip().splitlines()[0]


def settings(lab: Lab) -> dict[str, Any]:
    """What the primary was deployed with: its rendered keepalived.conf and agent.json."""
    document = yaml.safe_load(lab.droplets[lab.spec.primary].spec.user_data)
    files = {e["path"]: e for e in document.get("write_files") or []}

    def text(path: str) -> str:
        entry = files[path]
        return decode(entry.get("content", ""), entry.get("encoding", "text/plain")).decode()

    found: dict[str, Any] = {"stack": lab.spec.source, "failback": lab.spec.failback}
    for line in text("/etc/keepalived/keepalived.conf").splitlines():
        match = KEEPALIVED_SETTINGS.match(line)
        if match:
            found[RENAMED.get(match[1], match[1])] = match[2] or True
    agent = json.loads(text("/etc/ha-web/agent.json"))
    for key in ("settle_seconds", "poll_interval", "request_timeout", "claim_timeout"):
        if key in agent:
            found[f"agent_{key}"] = agent[key]
    found["client"] = {"interval": lab.client.interval, "timeout": lab.client.timeout}
    return found


def write_json(
    path: Path, lab: Lab, results: dict[str, list[Run]], command: str, started: float
) -> None:
    report = {
        "command": command,
        "started": started,
        "duration_seconds": round(time.time() - started, 1),
        "machine": machine(),
        "keepalived": keepalived_version(lab),
        "action_latency": lab.emulator.action_latency,
        "settings": settings(lab),
        "metric_definitions": METRICS | OTHER_METRICS | PATH_METRICS,
        "targets": [
            asdict(t) | {"median": median, "met": met} for t, median, met in judged(results)
        ],
        "scenarios": [
            {
                "key": key,
                "title": titles()[key],
                "runs": len(runs),
                "metrics": {m: summary(runs, m) for m in [*METRICS, *OTHER_METRICS, *PATH_METRICS]},
                "each_run": [asdict(r) | {"metrics": r.metrics()} for r in runs],
            }
            for key, runs in results.items()
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
