"""The drill's report: a table and a timeline on stdout, and lab-report/report.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.client import Sample
from lab.cluster import Lab
from lab.journal_lines import AGENT_STATE
from lab.scenarios import Result


@dataclass(frozen=True)
class Line:
    time: float
    source: str
    text: str


def table(results: list[Result]) -> str:
    header = ("scenario", "IP moved (s)", "restore (s)", "failback (s)", "failed/requests",
              "failed in failback", "API calls (assign)", "IP at end", "ok")  # fmt: skip
    rows = [header]
    for r in results:
        rows.append(
            (
                r.title,
                "-" if r.fault_at is None else _seconds(r.moved_seconds),
                "-" if r.fault_at is None else _seconds(r.restore_seconds),
                "-" if r.recover_at is None else _seconds(r.failback_seconds),
                f"{r.failed}/{r.requests}",
                "-" if r.recover_at is None else str(r.failback_failed),
                f"{r.api_calls} ({r.assign_calls})",
                r.holder or "nobody",
                "yes"
                if r.ok
                else "NO: " + "; ".join(r.problems or [f"expected {r.expected_holder}"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"


def client_lines(samples: list[Sample]) -> list[Line]:
    """Where answers change hands or start and stop failing, not every 50 ms sample."""
    lines: list[Line] = []
    current: str | None = ""
    for sample in samples:
        who = sample.node
        if who != current:
            text = f"answered by {who}" if who else f"requests fail ({sample.error})"
            lines.append(Line(sample.time, "client", text))
            current = who
    return lines


def node_lines(lab: Lab) -> list[Line]:
    lines = []
    for droplet in lab.droplets.values():
        for raw in droplet.journal().splitlines():
            match = AGENT_STATE.match(raw)
            if match:
                lines.append(Line(float(match[1]), droplet.name, f"keepalived says {match[2]}"))
    return lines


def timeline(lab: Lab, start: float) -> list[Line]:
    lines = [Line(e.time, e.kind, e.text) for e in lab.events if e.time >= start]
    lines += [line for line in node_lines(lab) if line.time >= start]
    lines += client_lines(lab.samples(start))
    return sorted(lines, key=lambda line: line.time)


def render_timeline(lines: list[Line], start: float) -> str:
    return "\n".join(f"{line.time - start:8.2f}s  {line.source:<14} {line.text}" for line in lines)


def write_json(
    path: Path, lab: Lab, results: list[Result], lines: list[Line], start: float
) -> None:
    report = {
        "source": lab.spec.source,
        "reserved_ip": lab.spec.reserved_ip,
        "primary": lab.spec.primary,
        "failback": lab.spec.failback,
        "action_latency": lab.emulator.action_latency,
        "started": start,
        "scenarios": [asdict(r) | {"ok": r.ok} for r in results],
        "timeline": [asdict(line) for line in lines],
        "samples": [asdict(s) for s in lab.samples(start)],
        "api_calls": [
            {
                "time": c.time,
                "node": lab.name_of(c.source),
                "method": c.method,
                "path": c.path,
                "status": c.status,
            }
            for c in lab.emulator.calls()
            if c.time >= start
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
