"""The agent's claim of the reserved IP, against the emulated DigitalOcean API."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

import pytest

from lab.emulator import Fault
from tests.agent_harness import RESERVED_IP, TOKEN, Cloud, HealthServer, Node

ACTIONS = "/v2/reserved_ips/*/actions"
RESERVED = f"/v2/reserved_ips/{RESERVED_IP}"


def test_claim_assigns_the_ip_and_polls_the_action_until_completed(
    cloud: Cloud, node: Node
) -> None:
    cloud.emulator.action_latency = 0.3

    run = node.run("claim")

    assert run.code == 0, run.log
    assert cloud.holder() == node.droplet.id
    assert len(cloud.emulator.calls("GET", f"{ACTIONS}/*")) >= 2


def test_claim_skips_the_poll_when_the_post_answer_is_already_completed(
    cloud: Cloud, node: Node
) -> None:
    run = node.run("claim")

    assert run.code == 0, run.log
    assert cloud.holder() == node.droplet.id
    assert cloud.emulator.calls("GET", f"{ACTIONS}/*") == []


def test_a_second_claim_makes_one_get_and_no_post(cloud: Cloud, node: Node) -> None:
    assert node.run("claim").code == 0
    before = len(cloud.emulator.calls())

    run = node.run("claim")

    assert run.code == 0
    later = cloud.emulator.calls()[before:]
    assert [(c.method, c.path) for c in later] == [("GET", RESERVED)]
    assert "already on this droplet" in run.log


def test_claim_uses_the_cached_droplet_id_without_asking_metadata(cloud: Cloud, node: Node) -> None:
    assert node.run("claim").code == 0

    assert cloud.emulator.calls(path="/metadata/*") == []


@pytest.mark.parametrize(
    "fault",
    [
        Fault.pending_event(path=ACTIONS),
        Fault.server_error("GET", RESERVED),
        Fault.server_error("POST", ACTIONS, times=2),
        Fault.action_errored(),
    ],
    ids=["422-pending-event", "500-on-get", "500-twice-on-post", "action-errored"],
)
def test_claim_succeeds_through_a_transient_fault(cloud: Cloud, node: Node, fault: Fault) -> None:
    cloud.emulator.add_fault(fault)

    run = node.run("claim")

    assert run.code == 0, run.log
    assert fault.hits >= 1
    assert cloud.holder() == node.droplet.id
    assert "retrying in" in run.log


def test_claim_honours_retry_after_on_429(cloud: Cloud, node: Node) -> None:
    cloud.emulator.add_fault(Fault.rate_limited(retry_after=1, path=ACTIONS))

    started = time.monotonic()
    run = node.run("claim")

    assert run.code == 0, run.log
    assert time.monotonic() - started >= 1.0
    assert cloud.holder() == node.droplet.id


def test_claim_falls_back_to_ratelimit_reset_when_429_has_no_retry_after(
    cloud: Cloud, node: Node
) -> None:
    fault = Fault.rate_limited(retry_after=None, path=ACTIONS)
    fault.headers["ratelimit-reset"] = str(int(time.time()) + 2)
    cloud.emulator.add_fault(fault)

    started = time.monotonic()
    run = node.run("claim")

    assert run.code == 0, run.log
    assert time.monotonic() - started >= 0.9
    assert cloud.holder() == node.droplet.id


def test_claim_retries_after_a_response_slower_than_request_timeout(
    cloud: Cloud, node: Node
) -> None:
    cloud.emulator.add_fault(Fault.hang(1.0, "GET", RESERVED))

    started = time.monotonic()
    run = node.run("claim")

    assert run.code == 0, run.log
    assert "timed out" in run.log
    assert time.monotonic() - started < 1.0
    assert cloud.holder() == node.droplet.id


def test_claim_waits_for_an_action_that_stays_in_progress(cloud: Cloud, node: Node) -> None:
    cloud.emulator.action_latency = 0.6
    node.configure(poll_interval=0.1)

    run = node.run("claim")

    assert run.code == 0, run.log
    assert len(cloud.emulator.calls("GET", f"{ACTIONS}/*")) >= 4
    assert cloud.assigns() == 1


def test_claim_gives_up_within_claim_timeout(cloud: Cloud, node: Node) -> None:
    node.configure(claim_timeout=1.0)
    cloud.emulator.add_fault(Fault.server_error("GET", RESERVED, times=None))

    started = time.monotonic()
    run = node.run("claim")

    assert run.code == 1
    assert time.monotonic() - started < 1.0 + 0.5
    assert "gave up claiming" in run.log
    assert cloud.holder() is None


def test_claim_gives_up_when_the_action_never_completes(cloud: Cloud, node: Node) -> None:
    cloud.emulator.action_latency = 30
    node.configure(claim_timeout=0.6)

    started = time.monotonic()
    run = node.run("claim")

    assert run.code == 1
    assert time.monotonic() - started < 1.2
    assert "still in-progress" in run.log


def test_claim_stops_when_state_json_no_longer_says_master(cloud: Cloud, node: Node) -> None:
    cloud.emulator.action_latency = 30
    thread, result = node.run_in_thread("claim")
    deadline = time.monotonic() + 3
    while cloud.assigns() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    node.set_state("BACKUP", previous="MASTER")
    thread.join(timeout=2)

    assert not thread.is_alive()
    assert result[0].code == 0
    assert "stopped" in result[0].log
    assert cloud.assigns() == 1


def test_claim_does_nothing_when_not_master(cloud: Cloud, node: Node) -> None:
    node.set_state("BACKUP")

    run = node.run("claim")

    assert run.code == 0
    assert cloud.emulator.calls() == []


@pytest.mark.parametrize(
    ("status", "hint"),
    [(401, "reserved_ip:update"), (403, "reserved_ip:update"), (404, "not found")],
)
def test_claim_stops_at_once_on_a_client_error(
    cloud: Cloud, node: Node, status: int, hint: str
) -> None:
    if status == 401:
        cloud.emulator.set_token("some-other-token")
    else:
        cloud.emulator.add_fault(Fault("GET", RESERVED, status=status, times=None))

    run = node.run("claim")

    assert run.code == 1
    assert len(cloud.emulator.calls()) == 1
    assert hint in run.log
    assert str(status) in run.log


def test_a_claim_while_another_runs_exits_zero_without_calling_the_api(
    cloud: Cloud, node: Node
) -> None:
    lock = os.open(node.root / "run" / "claim.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run = node.run("claim")
    finally:
        os.close(lock)

    assert run.code == 0
    assert "already running" in run.log
    assert cloud.emulator.calls() == []


def test_settle_waits_when_the_node_was_backup_only_briefly(cloud: Cloud, node: Node) -> None:
    node.configure(settle_seconds=0.5)
    node.set_state("MASTER", for_seconds=0.0, previous="BACKUP", previous_for=0.1)

    started = time.time()
    run = node.run("claim")

    assert run.code == 0, run.log
    assert cloud.emulator.calls()[0].time >= started + 0.45
    assert cloud.holder() == node.droplet.id


def test_settle_is_skipped_after_a_long_backup(cloud: Cloud, node: Node) -> None:
    node.configure(settle_seconds=5.0)
    node.set_state("MASTER", for_seconds=0.0, previous="BACKUP", previous_for=10.0)

    started = time.monotonic()
    run = node.run("claim")

    assert run.code == 0, run.log
    assert time.monotonic() - started < 1.0


def test_settle_aborts_the_claim_if_master_ends_while_waiting(cloud: Cloud, node: Node) -> None:
    node.configure(settle_seconds=1.0)
    node.set_state("MASTER", for_seconds=0.0, previous="FAULT", previous_for=5.0)
    thread, result = node.run_in_thread("claim")
    time.sleep(0.2)

    node.set_state("BACKUP", previous="MASTER")
    thread.join(timeout=2)

    assert result[0].code == 0
    assert cloud.emulator.calls() == []


def test_notify_master_records_the_transition_and_claims(cloud: Cloud, node: Node) -> None:
    node.set_state("BACKUP", for_seconds=50.0, previous=None)

    run = node.run("notify", "INSTANCE", "ha_web", "MASTER", "200")

    assert run.code == 0, run.log
    state = node.state()
    assert (state["state"], state["previous"], state["priority"]) == ("MASTER", "BACKUP", 200)
    assert state["keepalived_pid"] == os.getppid()
    assert state["since"] - state["previous_since"] >= 49
    assert cloud.holder() == node.droplet.id


def test_notify_backup_records_the_state_without_calling_the_api(cloud: Cloud, node: Node) -> None:
    run = node.run("notify", "INSTANCE", "ha_web", "BACKUP", "200")

    assert run.code == 0
    assert node.state()["state"] == "BACKUP"
    assert node.state()["previous"] == "MASTER"
    assert cloud.emulator.calls() == []


def test_a_group_readable_token_file_is_refused(cloud: Cloud, node: Node) -> None:
    node.token_file.chmod(0o640)

    run = node.run("claim")

    assert run.code == 1
    assert "chmod 600" in run.log
    assert cloud.emulator.calls() == []


def test_the_token_is_never_in_logs_argv_or_environment(cloud: Cloud, node: Node) -> None:
    node.configure(request_timeout=1.0)
    fault = cloud.emulator.add_fault(Fault.hang(1.5, "GET", RESERVED))
    proc = node.spawn("claim")
    try:
        assert fault.hit.wait(timeout=5)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
    finally:
        _, log = proc.communicate(timeout=10)

    assert proc.returncode == 0, log
    assert "GET " + RESERVED in log
    for seen in (cmdline.decode(), environ.decode(), log, repr(cloud.emulator.calls())):
        assert TOKEN not in seen
    assert TOKEN[-12:] not in log


def test_a_bad_setting_is_named_and_exits_2(cloud: Cloud, node: Node) -> None:
    node.configure(claim_timeout="soon")

    run = node.run("claim")

    assert run.code == 2
    assert "'claim_timeout' must be a positive number, got 'soon'" in run.log
    assert cloud.emulator.calls() == []


def test_a_clean_failover_takes_at_most_four_api_calls_and_no_metadata_call(
    cloud: Cloud, node: Node
) -> None:
    cloud.emulator.assign_now(RESERVED_IP, cloud.droplets[1].id)
    node.set_state("BACKUP", for_seconds=50.0, previous=None)

    run = node.run("notify", "INSTANCE", "ha_web", "MASTER", "200")

    assert run.code == 0, run.log
    assert cloud.holder() == node.droplet.id
    assert [(c.method, c.path) for c in cloud.emulator.calls()] == [
        ("GET", RESERVED),
        ("POST", f"{RESERVED}/actions"),
    ]
    assert len(cloud.emulator.calls()) <= 4
    assert cloud.emulator.calls(path="/metadata/*") == []


def test_notify_as_keepalived_runs_it_posts_the_assign_without_a_settle_wait(
    cloud: Cloud, node: Node
) -> None:
    node.configure(settle_seconds=5.0)
    node.set_state("BACKUP", for_seconds=50.0, previous=None)

    started = time.time()
    proc = node.spawn("notify", "INSTANCE", "ha_web", "MASTER", "200")
    _, log = proc.communicate(timeout=10)

    assert proc.returncode == 0, log
    (post,) = cloud.emulator.calls("POST", ACTIONS)
    assert post.time - started < 2.0, "a long BACKUP claims at once, without settle_seconds"


def test_notify_writes_the_role_that_nginx_serves_to_peers(cloud: Cloud, node: Node) -> None:
    node.run("notify", "INSTANCE", "ha_web", "BACKUP", "200")
    backup = (node.root / "run" / "role").read_text()

    node.run("keepalived-stopped")

    assert (backup, (node.root / "run" / "role").read_text()) == ("BACKUP\n", "STOP\n")
    assert node.state()["state"] == "STOP"


def _lower_master(cloud: Cloud, tmp_path: Path, health_port: int) -> Node:
    """Droplet 1, the lower priority, a settled MASTER: it hears no VRRP from droplet 0."""
    lower = cloud.node(tmp_path, 1, health_port=health_port)
    lower.cache_identity()
    lower.set_state("MASTER")
    return lower


def test_claim_leaves_the_ip_on_a_higher_priority_master_that_answers_publicly(
    cloud: Cloud, tmp_path: Path, health: list[HealthServer], public: list[HealthServer]
) -> None:
    """The VPC is cut (no private health URL answers), clients still reach the holder."""
    lower = _lower_master(cloud, tmp_path, public[0].port)
    cloud.emulator.assign_now(RESERVED_IP, cloud.droplets[0].id)
    health[0].close()

    run = lower.run("claim")

    assert run.code == 0, run.log
    assert "answers as MASTER on its public address" in run.log
    assert cloud.holder() == cloud.droplets[0].id
    assert cloud.assigns() == 0


@pytest.mark.parametrize("role", ["FAULT", "BACKUP", "STOP", None])
def test_claim_takes_the_ip_from_a_higher_priority_holder_that_is_not_master(
    cloud: Cloud, tmp_path: Path, public: list[HealthServer], role: str | None
) -> None:
    lower = _lower_master(cloud, tmp_path, public[0].port)
    cloud.emulator.assign_now(RESERVED_IP, cloud.droplets[0].id)
    public[0].role = role

    run = lower.run("claim")

    assert run.code == 0, run.log
    assert cloud.holder() == lower.droplet.id


def test_claim_takes_the_ip_from_a_holder_whose_public_address_never_answers(
    cloud: Cloud, tmp_path: Path
) -> None:
    """A crashed holder: the probe ends at holder_probe_timeout, and the claim goes on."""
    silent = socket.socket()
    silent.bind(("127.0.1.2", 0))
    silent.listen(0)
    try:
        lower = _lower_master(cloud, tmp_path, silent.getsockname()[1])
        cloud.emulator.assign_now(RESERVED_IP, cloud.droplets[0].id)
        started = time.monotonic()

        run = lower.run("claim")

        assert run.code == 0, run.log
        assert cloud.holder() == lower.droplet.id
        assert time.monotonic() - started < 0.5 + 1.0
    finally:
        silent.close()
