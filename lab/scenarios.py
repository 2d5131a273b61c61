"""The drill's scenarios, each run against a lab whose primary serves, measured from the
client's samples and the emulator's call log."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.cluster import Lab, LabError

SETTLE = 1.0
"""Seconds observed before a fault and after recovery."""
SLACK = 15.0
"""Seconds allowed beyond the emulated action latency for a failover or failback."""
NO_FAILBACK_WATCH = 8.0


@dataclass
class Result:
    key: str
    title: str
    started: float
    ended: float
    fault_at: float | None
    recover_at: float | None
    expected_holder: str
    holder: str | None
    restore_seconds: float | None
    """Fault to the first good answer after the last failure; 0 when nothing failed."""
    failback_seconds: float | None
    """Recovery action to the primary answering again, when failback is on."""
    requests: int
    failed: int
    api_calls: int
    assign_calls: int
    problems: list[str] = field(default_factory=list)
    moved_seconds: float | None = None
    """Fault to the first answer from another node than the one that held the IP."""
    failback_failed: int = 0
    """Failed requests from the recovery action on (the failback's share of `failed`)."""

    @property
    def ok(self) -> bool:
        return not self.problems and self.holder == self.expected_holder


def restore_time(lab: Lab, fault_at: float, until: float) -> float | None:
    samples = lab.samples(fault_at, until)
    failures = [s for s in samples if s.node is None]
    if not failures:
        return 0.0
    after = [s for s in samples if s.node is not None and s.time > failures[-1].time]
    return after[0].time - fault_at if after else None


def moved_time(lab: Lab, fault_at: float, until: float, away_from: str) -> float | None:
    moved = [s for s in lab.samples(fault_at, until) if s.node not in (None, away_from)]
    return moved[0].time - fault_at if moved else None


def measure(
    lab: Lab,
    *,
    key: str,
    title: str,
    started: float,
    fault_at: float | None,
    recover_at: float | None,
    expected: str,
    failback_seconds: float | None = None,
    problems: list[str] | None = None,
) -> Result:
    ended = time.time()
    lab.client.settle(ended)
    samples = lab.samples(started, ended)
    calls = [c for c in lab.emulator.calls(path="/v2/*") if started <= c.time < ended]
    assigns = [c for c in calls if c.method == "POST" and c.path.endswith("/actions")]
    restore = moved = None
    if fault_at is not None:
        restore = restore_time(lab, fault_at, recover_at or ended)
        moved = moved_time(lab, fault_at, recover_at or ended, lab.spec.primary)
    after_recovery = [s for s in samples if recover_at is not None and s.time >= recover_at]
    return Result(
        key, title, started, ended, fault_at, recover_at, expected, lab.holder(), restore,
        failback_seconds, len(samples), sum(1 for s in samples if s.node is None),
        len(calls), len(assigns), problems or [], moved,
        sum(1 for s in after_recovery if s.node is None),
    )  # fmt: skip


def bound(lab: Lab) -> float:
    return lab.emulator.action_latency + SLACK


def ensure_steady(lab: Lab) -> None:
    """Before each scenario: the primary holds the IP and answers."""
    primary = lab.spec.primary
    lab.wait_for(lambda: lab.holder() == primary, bound(lab) + 30, f"{primary} to hold the IP")
    lab.wait_serving(primary, bound(lab))


def steady_state(lab: Lab, seconds: float = 5.0) -> Result:
    ensure_steady(lab)
    started = time.time()
    lab.event("action", "scenario 1: steady state")
    time.sleep(seconds)
    return measure(
        lab,
        key="steady",
        title="1. steady state",
        started=started,
        fault_at=None,
        recover_at=None,
        expected=lab.spec.primary,
    )


def _failover(
    lab: Lab,
    key: str,
    title: str,
    fault: Callable[[], object],
    recover: Callable[[], object],
    *,
    what: str = "fault",
) -> Result:
    ensure_steady(lab)
    primary, backup = lab.spec.primary, lab.spec.backup
    started = time.time()
    time.sleep(SETTLE)
    problems: list[str] = []
    fault_at = time.time()
    lab.event("action", f"{title}: {what} on {primary}")
    try:
        fault()
        lab.wait_serving(backup, bound(lab))
    except LabError as error:
        problems.append(f"failover: {error}")
    time.sleep(SETTLE)
    recover_at = time.time()
    lab.event("action", f"{title}: recovering {primary}")
    failback_seconds = None
    expected = primary if lab.spec.failback else backup
    try:
        recover()
        if lab.spec.failback:
            lab.wait_for(
                lambda: lab.holder() == primary, bound(lab) + 20, f"{primary} to hold the IP"
            )
            lab.wait_serving(primary, bound(lab))
            failback_seconds = time.time() - recover_at
        else:
            time.sleep(NO_FAILBACK_WATCH)
    except LabError as error:
        problems.append(f"failback: {error}")
    time.sleep(SETTLE)
    return measure(
        lab,
        key=key,
        title=title,
        started=started,
        fault_at=fault_at,
        recover_at=recover_at,
        expected=expected,
        failback_seconds=failback_seconds,
        problems=problems,
    )


def stop_nginx(lab: Lab) -> Result:
    node = lab.droplets[lab.spec.primary]
    return _failover(
        lab,
        "nginx",
        "2. stop nginx on the primary",
        lambda: _check(node.systemctl("stop", "nginx.service")),
        lambda: _check(node.systemctl("start", "nginx.service")),
    )


def crash_primary(lab: Lab) -> Result:
    name = lab.spec.primary

    def back() -> None:
        lab.boot([name])

    return _failover(lab, "crash", "3. crash the primary", lambda: lab.crash(name), back)


def kill_keepalived(lab: Lab) -> Result:
    node = lab.droplets[lab.spec.primary]
    return _failover(
        lab,
        "keepalived",
        "4. kill keepalived on the primary",
        lambda: _expect(node.kill("keepalived"), "no keepalived process to kill"),
        lambda: _check(node.systemctl("start", "keepalived.service")),
    )


def maintenance(lab: Lab, action: str, user: str | None = None) -> float:
    """`ha-web-agent maintenance <action>` on the primary, as root or `user`; its duration.

    LabError unless it exits 0 and, for `on`, says done: the IP is on another member that
    answers."""
    node = lab.droplets[lab.spec.primary]
    started = time.time()
    result = node.run(["ha-web-agent", "maintenance", action], user=user, timeout=90)
    took = time.time() - started
    said = (result.stdout + result.stderr).strip().replace("\n", " | ")
    lab.event("action", f"maintenance {action} returned {result.returncode} after {took:.2f} s")
    if result.returncode != 0 or (action == "on" and "done:" not in result.stdout):
        raise LabError(f"`ha-web-agent maintenance {action}` failed ({result.returncode}): {said}")
    return took


def planned_switchover(lab: Lab, user: str | None = None) -> Result:
    """`maintenance on` moves the IP off the primary before it is touched; `off` brings it
    back (failback on). Neither may lose a request."""

    def on() -> None:
        maintenance(lab, "on", user)
        holder = lab.holder()
        if holder != lab.spec.backup:
            raise LabError(f"maintenance on said done while the IP was on {holder}")

    return _failover(
        lab,
        "switchover",
        "5. planned switchover",
        on,
        lambda: maintenance(lab, "off", user),
        what="ha-web-agent maintenance on",
    )


SCENARIOS: list[Callable[[Lab], Result]] = [
    steady_state,
    stop_nginx,
    crash_primary,
    kill_keepalived,
    planned_switchover,
]


def _check(result: object) -> None:
    code = getattr(result, "returncode", 0)
    if code != 0:
        raise LabError(f"command in the droplet failed: {getattr(result, 'stdout', '')}")


def _expect(found: list[int], message: str) -> None:
    if not found:
        raise LabError(message)
