"""A lab leaves nothing behind: after an error inside it, and after `down` from another
shell, even when the process that ran it was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lab.droplet import REPO
from lab.state import leftovers, saved_labs, snapshot, start_time
from tests.lab_fixtures import new_lab

pytestmark = pytest.mark.lab


def _lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=REPO, capture_output=True, text=True,
        timeout=240, check=False,
    )  # fmt: skip


def test_an_error_inside_a_running_lab_leaves_nothing() -> None:
    before = snapshot()
    with pytest.raises(RuntimeError, match="boom"), new_lab() as lab:
        assert lab.droplets
        raise RuntimeError("boom")
    assert leftovers(before) == []


def test_up_then_down_leaves_nothing_and_up_prints_hints() -> None:
    before = snapshot()
    started = _lab("up", "--latency", "0")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "ip netns exec" in started.stdout and "nsenter -t" in started.stdout
    finally:
        stopped = _lab("down")
    assert stopped.returncode == 0
    assert leftovers(before) == []


def test_down_cleans_up_after_a_lab_whose_process_was_killed() -> None:
    before = snapshot()
    started = _lab("up", "--latency", "0")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        (state,) = saved_labs()
        os.kill(state.owner[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while start_time(state.owner[0]) == state.owner[1] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state.inits and all(start_time(pid) == st for pid, st in state.inits)
    finally:
        stopped = _lab("down")
    assert stopped.returncode == 0, stopped.stderr
    assert leftovers(before) == []
