"""The failover benchmark: each fault, many times, on one booted lab, timed along its path.

A run starts from a steady state (the primary holds the IP and answers, every node healthy,
the backup BACKUP for longer than the agent's settle time), injects one fault, and waits
until the node that should take over holds the IP and answers. Then it recovers (not timed)
and the next run waits for the steady state again. Each run is timed from the fault to:

- `detect`: the first VRRP state change any node logs after the fault (keepalived's
  "Entering ... STATE" lines in the droplets' journals, stamped by each droplet's journald
  as they arrive);
- `master`: the new holder entering MASTER (same source);
- `assign`: the new holder's assign call arriving at the emulated API (its call log);
- `routed`: the emulator routing the reserved IP to it (the lab's event log);
- `served`: the client's first answer from it through the reserved IP (a request every 50 ms).

The emulator completes actions after `action_latency` (0 here): DigitalOcean's own action
time is a parameter, reported with the results, not part of what ha-web controls.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.cluster import Lab, LabError
from lab.droplet import Droplet, DropletError
from lab.journal_lines import (
    KEEPALIVED_STATE,
    UNIT_ENDED,
    UNIT_STARTING,
    UNIT_STOPPING,
    job_began,
)
from lab.scenarios import maintenance

TIMER_UNITS = ("ha-web-reconcile.service", "ha-web-peers.service")
BEFORE = 0.5
"""Seconds of polling before each fault, plus up to JITTER more."""
JITTER = 1.0
"""Rounds take about as long every time, so without it the agent's timers (10 s, 30 s) would
fire at the same point of every run of a scenario, in all of them or in none."""
AFTER = 1.0
"""Seconds after the takeover that still count (late failures, late API calls)."""
TAKEOVER_TIMEOUT = 30.0
STEADY_TIMEOUT = 90.0
STEADY_MARGIN = 0.5
"""The backup must have been BACKUP this much longer than settle_seconds before a fault,
or its takeover would wait out the settle time (the agent's guard against keepalived #2231)."""

Echo = Callable[[str], None]


@dataclass
class Run:
    scenario: str
    index: int
    new_holder: str
    fault_at: float
    detect_at: float | None = None
    detected: str = ""
    """Which node logged which state first."""
    master_at: float | None = None
    assign_at: float | None = None
    routed_at: float | None = None
    served_at: float | None = None
    done_at: float | None = None
    requests: int = 0
    failed: int = 0
    api_calls: int = 0
    """Calls the failover made: the claim, and for a switchover the command's own polls."""
    timer_calls: int = 0
    """Calls the agent's timers (reconcile, peers) happened to make in the same window."""
    calls: list[str] = field(default_factory=list)
    """`node METHOD path -> status` of every API call in the run, timers' marked."""
    problems: list[str] = field(default_factory=list)

    def since_fault(self, at: float | None) -> float | None:
        return None if at is None else at - self.fault_at

    def metrics(self) -> dict[str, float | None]:
        """The reported numbers, in seconds or counts; None when that point was not reached."""
        return {
            "served": self.since_fault(self.served_at),
            "detect": self.since_fault(self.detect_at),
            "detect_to_assign": _between(self.detect_at, self.assign_at),
            "failed": float(self.failed),
            "api_calls": float(self.api_calls),
            "timer_calls": float(self.timer_calls),
            "detect_to_master": _between(self.detect_at, self.master_at),
            "master_to_assign": _between(self.master_at, self.assign_at),
            "assign_to_routed": _between(self.assign_at, self.routed_at),
            "routed_to_served": _between(self.routed_at, self.served_at),
        }


def _between(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    fault: Callable[[Lab], float]
    """Injects the fault on the primary; returns when it began (epoch seconds)."""
    recover: Callable[[Lab], None]
    """Undoes it (untimed); the next run waits for the steady state."""
    to_primary: bool = False
    """The primary takes the IP (failback), not the backup."""
    prepare: Callable[[Lab], None] | None = None
    """Brings the lab to where the fault applies (untimed), after the steady state."""


# -- faults and recoveries --


def _primary(lab: Lab) -> Droplet:
    return lab.droplets[lab.spec.primary]


def systemd_job(lab: Lab, droplet: Droplet, verb: str, unit: str) -> float:
    """Run `systemctl verb unit` in the droplet; when systemd began the job (its "Stopping"
    or "Starting" line), not when the command was asked (nsenter adds a few ms)."""
    asked = time.time()
    result = droplet.systemctl(verb, unit)
    if result.returncode != 0:
        raise LabError(
            f"systemctl {verb} {unit} on {droplet.name} failed: {result.stdout}{result.stderr}"
        )
    began = UNIT_STOPPING if verb == "stop" else UNIT_STARTING
    found: list[float] = []

    def logged() -> bool:
        at = job_began(droplet.journal(), began, unit, asked)
        found.extend([] if at is None else [at])
        return bool(found)

    lab.wait_for(logged, 10, f"systemd's line for the {verb} of {unit} on {droplet.name}")
    return found[0]


def stop_nginx(lab: Lab) -> float:
    return systemd_job(lab, _primary(lab), "stop", "nginx.service")


def start_nginx(lab: Lab) -> None:
    systemd_job(lab, _primary(lab), "start", "nginx.service")


def crash(lab: Lab) -> float:
    at = time.time()
    lab.crash(lab.spec.primary)
    return at


def reboot(lab: Lab) -> None:
    lab.boot([lab.spec.primary])


def kill_keepalived(lab: Lab) -> float:
    at = time.time()
    if not _primary(lab).kill("keepalived"):
        raise LabError(f"no keepalived process to kill on {lab.spec.primary}")
    return at


def start_keepalived(lab: Lab) -> None:
    systemd_job(lab, _primary(lab), "start", "keepalived.service")


def failback_fault(lab: Lab) -> float:
    """The recovery is the event here: nginx on the primary starts again."""
    return systemd_job(lab, _primary(lab), "start", "nginx.service")


def prepare_failback(lab: Lab) -> None:
    stop_nginx(lab)
    _await_holder(lab, lab.spec.backup, TAKEOVER_TIMEOUT)
    # Until the primary's health check has failed `fall` times it would leave FAULT at once.
    time.sleep(2.0)


def maintenance_on(lab: Lab) -> float:
    at = time.time()
    maintenance(lab, "on")
    return at


def maintenance_off(lab: Lab) -> None:
    maintenance(lab, "off")


def _no_recovery(_: Lab) -> None:
    return None


SCENARIOS = [
    Scenario("nginx", "nginx stopped on the master", stop_nginx, start_nginx),
    Scenario("crash", "master node crash", crash, reboot),
    Scenario("keepalived", "keepalived killed on the master", kill_keepalived, start_keepalived),
    Scenario(
        "failback", "failback after recovery", failback_fault, _no_recovery, True, prepare_failback
    ),
    Scenario("switchover", "planned switchover", maintenance_on, maintenance_off),
]


# -- waiting --


def _read(droplet: Droplet, path: str) -> str:
    try:
        return droplet.path(path).read_text().strip()
    except (OSError, DropletError):
        return ""


def _state(droplet: Droplet) -> tuple[str, float]:
    """keepalived's state as the agent recorded it, and since when."""
    try:
        raw = json.loads(_read(droplet, "/run/ha-web/state.json"))
        return str(raw["state"]), float(raw["since"])
    except (ValueError, KeyError, TypeError):
        return "", 0.0


def settle_seconds(lab: Lab) -> float:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        raw = json.loads(_read(_primary(lab), "/etc/ha-web/agent.json"))
        return float(raw["settle_seconds"])
    return 2.4  # the agent's own default


def steady(lab: Lab, settle: float) -> bool:
    primary, backup = _primary(lab), lab.droplets[lab.spec.backup]
    if not (primary.running and backup.running):
        return False
    if lab.holder() != primary.name or not lab.serving(primary.name):
        return False
    for droplet in (primary, backup):
        for path in ("/run/ha-web-root/nginx-down", "/run/ha-web/maintenance"):
            if _read(droplet, path) != "0":
                return False
    backup_state, since = _state(backup)
    return (
        _state(primary)[0] == "MASTER"
        and backup_state == "BACKUP"
        and time.time() - since > settle + STEADY_MARGIN
    )


def _await_holder(lab: Lab, name: str, timeout: float) -> float:
    lab.wait_for(
        lambda: lab.holder() == name and lab.serving(name),
        timeout,
        f"{name} to hold the IP and answer through it",
    )
    return time.time()


# -- one run --


def _state_changes(lab: Lab, since: float) -> list[tuple[float, str, str]]:
    """(time, node, state) of every keepalived state change logged since `since` by a running
    node: a crashed node's last words (its link went down) reach no one."""
    found = []
    for droplet in lab.droplets.values():
        if not droplet.running:
            continue
        for line in droplet.journal().splitlines():
            match = KEEPALIVED_STATE.match(line)
            if match and float(match[1]) >= since:
                found.append((float(match[1]), droplet.name, match[2]))
    return sorted(found)


def _timer_runs(lab: Lab, since: float) -> dict[str, list[tuple[float, float]]]:
    """Per node, the spans in which a timer's service ran (systemd's Starting and Finished
    lines)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for droplet in lab.droplets.values():
        began: dict[str, float] = {}
        for line in droplet.journal().splitlines():
            started, ended = UNIT_STARTING.match(line), UNIT_ENDED.match(line)
            if started and started[2] in TIMER_UNITS and float(started[1]) >= since:
                began[started[2]] = float(started[1])
            elif ended and (unit := ended[3]) in began:
                spans.setdefault(droplet.name, []).append((began.pop(unit), float(ended[1])))
        # A run still going at the end of the window.
        spans.setdefault(droplet.name, []).extend((t, float("inf")) for t in began.values())
    return spans


def _measure(lab: Lab, run: Run, end: float) -> None:
    changes = _state_changes(lab, run.fault_at)
    if changes:
        run.detect_at, node, state = changes[0]
        run.detected = f"{node} {state}"
    run.master_at = next(
        (t for t, node, state in changes if node == run.new_holder and state == "MASTER"), None
    )
    holder = lab.droplets[run.new_holder].spec.public_ip
    calls = [c for c in lab.emulator.calls(path="/v2/*") if run.fault_at <= c.received < end]
    timers = _timer_runs(lab, run.fault_at - 60)
    by_timer = [
        any(a <= c.received <= b for a, b in timers.get(lab.name_of(c.source), [])) for c in calls
    ]
    run.timer_calls = sum(by_timer)
    run.api_calls = len(calls) - run.timer_calls
    run.calls = [
        f"{lab.name_of(c.source)} {c.method} {c.path} -> {c.status}" + (" (timer)" if t else "")
        for c, t in zip(calls, by_timer, strict=True)
    ]
    run.assign_at = next(
        (
            c.received
            for c in calls
            if c.method == "POST" and c.path.endswith("/actions") and c.source == holder
        ),
        None,
    )
    run.routed_at = next(
        (
            e.time
            for e in list(lab.events)
            if e.kind == "route" and e.time >= run.fault_at and e.text.endswith(run.new_holder)
        ),
        None,
    )
    lab.client.settle(end)
    samples = lab.samples(run.fault_at, end)
    run.requests = len(samples)
    run.failed = sum(1 for s in samples if s.node is None)
    run.served_at = next((s.time for s in samples if s.node == run.new_holder), None)


def run_once(lab: Lab, scenario: Scenario, index: int, settle: float) -> Run:
    lab.wait_for(lambda: steady(lab, settle), STEADY_TIMEOUT, "the steady state")
    if scenario.prepare is not None:
        scenario.prepare(lab)
    time.sleep(BEFORE + random.uniform(0, JITTER))
    new_holder = lab.spec.primary if scenario.to_primary else lab.spec.backup
    lab.event("action", f"bench {scenario.key} #{index}: fault")
    run = Run(scenario.key, index, new_holder, time.time())
    try:
        run.fault_at = scenario.fault(lab)
        run.done_at = _await_holder(lab, new_holder, TAKEOVER_TIMEOUT)
    except (LabError, DropletError) as error:
        run.problems.append(str(error))
    time.sleep(AFTER)
    _measure(lab, run, time.time())
    try:
        scenario.recover(lab)
    except (LabError, DropletError) as error:
        run.problems.append(f"recovery: {error}")
    return run


def run_bench(
    lab: Lab, runs: int, scenarios: list[Scenario] | None = None, echo: Echo = print
) -> dict[str, list[Run]]:
    """`runs` runs of each scenario, round robin (so slow drift of the machine hits all alike)."""
    chosen = scenarios or SCENARIOS
    settle = settle_seconds(lab)
    results: dict[str, list[Run]] = {s.key: [] for s in chosen}
    for index in range(1, runs + 1):
        for scenario in chosen:
            run = run_once(lab, scenario, index, settle)
            results[scenario.key].append(run)
            served = run.since_fault(run.served_at)
            echo(
                f"bench: {scenario.key} #{index}: served by {run.new_holder} after "
                + ("never" if served is None else f"{served:.2f} s")
                + f", {run.failed} failed, {run.api_calls} API calls"
                + (f"; problems: {'; '.join(run.problems)}" if run.problems else "")
            )
    return results
