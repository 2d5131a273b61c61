"""Running labs for the lab tests, with guaranteed teardown and a check that nothing is left.

Import the fixtures into a test module (`from tests.lab_fixtures import dev_lab, make_lab`).
Every lab runs the dev stack as the Pulumi program renders it, with the agent's timers
shortened (the program's minimum, 5 s) so the tests do not wait on 10 s and 30 s timers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab.cluster import Lab
from lab.droplet import Droplet
from lab.journal_lines import runs_ended
from lab.spec import from_stack
from lab.state import leftovers, snapshot

FAST_TIMERS = {"reconcileInterval": 5, "peersRefreshInterval": 5}
BOOT_BOUND = 60.0
"""Seconds a fresh pair may take to boot and have the primary serve (the machine is noisy)."""

RECONCILE = "ha-web-reconcile.service"
PEERS = "ha-web-peers.service"

MakeLab = Callable[..., Lab]


def new_lab(settings: dict[str, Any] | None = None, latency: float = 0.0) -> Lab:
    return Lab(from_stack("dev", {**FAST_TIMERS, **(settings or {})}), latency, echo=print)


def journals(lab: Lab) -> str:
    """Every droplet's journal, for assertion messages."""
    return "\n".join(f"===== {n}\n{d.journal()[-6000:]}" for n, d in lab.droplets.items())


def wait_runs(lab: Lab, droplet: Droplet, unit: str, since: float, count: int = 2) -> None:
    """Wait until `count` runs of a timer's oneshot `unit` have ended on `droplet` since
    `since`: a test that checks something did *not* happen waits for the chances it had."""
    lab.wait_for(
        lambda: len(runs_ended(droplet.journal(), unit, since)) >= count,
        10.0 * (count + 1),
        f"{count} runs of {unit} on {droplet.name}",
    )


@pytest.fixture
def make_lab() -> Iterator[MakeLab]:
    """A factory of labs (settings, latency, boot); all are torn down after the test."""
    before = snapshot()
    labs: list[Lab] = []

    def make(
        settings: dict[str, Any] | None = None, latency: float = 0.0, boot: bool = True
    ) -> Lab:
        lab = new_lab(settings, latency)
        labs.append(lab)
        lab.start(boot=boot)
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.close()
    found = leftovers(before)
    assert found == [], f"left behind: {found}"


@pytest.fixture(scope="module")
def dev_lab() -> Iterator[Lab]:
    """One dev-stack lab for a module, its primary serving through the reserved IP."""
    before = snapshot()
    lab = new_lab()
    try:
        lab.start()
        lab.wait_serving(lab.spec.primary, BOOT_BOUND)
        yield lab
    finally:
        lab.close()
    found = leftovers(before)
    assert found == [], f"left behind: {found}"
