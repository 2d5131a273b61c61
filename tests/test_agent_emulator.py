"""The DigitalOcean emulator the agent tests and the lab rely on: its own contract."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.emulator import Droplet, Emulator, EmulatorServer, ReservedIp
from tests.agent_harness import RESERVED_IP, TAG, TOKEN

REPO = Path(__file__).resolve().parent.parent


def _call(
    url: str, method: str = "GET", body: object = None, token: str | None = TOKEN
) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            raw, status, headers = reply.read(), reply.status, dict(reply.headers.items())
    except urllib.error.HTTPError as exc:
        raw, status, headers = exc.read(), exc.code, dict(exc.headers.items())
    lowered = {k.lower(): v for k, v in headers.items()}
    is_json = lowered.get("content-type") == "application/json" and raw
    return status, lowered, json.loads(raw) if is_json else raw.decode()


@pytest.fixture
def emulator() -> Emulator:
    emu = Emulator(token=TOKEN, action_latency=0)
    emu.add_droplet("ha-web-test-0", "10.10.0.2", "198.51.100.2", [TAG], droplet_id=11)
    emu.add_reserved_ip(RESERVED_IP)
    return emu


@pytest.fixture
def url(emulator: Emulator) -> Iterator[str]:
    with EmulatorServer(emulator) as server:
        yield server.url


def test_api_answers_carry_do_rate_limit_headers_and_refuse_a_wrong_token(url: str) -> None:
    ok, headers, _ = _call(f"{url}/v2/reserved_ips/{RESERVED_IP}")
    refused, _, error = _call(f"{url}/v2/reserved_ips/{RESERVED_IP}", token="wrong")

    assert ok == 200
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(headers)
    assert refused == 401
    assert error["id"] == "unauthorized"


def test_lab_endpoint_schedules_faults_swaps_the_token_and_replaces_droplets(
    emulator: Emulator, url: str
) -> None:
    fault = {
        "method": "GET",
        "path": "/v2/droplets",
        "status": 429,
        "headers": {"retry-after": "3"},
    }
    assert _call(f"{url}/_lab/faults", "POST", fault, token=None)[0] == 201
    limited, headers, body = _call(f"{url}/v2/droplets?tag_name={TAG}")
    assert _call(f"{url}/_lab/token", "PUT", {"token": "rotated"}, token=None)[0] == 204
    _, _, new = _call(
        f"{url}/_lab/droplets/11/replace", "POST", {"private_ip": "10.10.0.9"}, token=None
    )

    assert (limited, headers["retry-after"], body["id"]) == (429, "3", "too_many_requests")
    assert _call(f"{url}/v2/droplets")[0] == 401
    assert new["private_ip"] == "10.10.0.9"
    assert list(emulator.droplets) == [new["id"]]
    assert all(TOKEN not in repr(call) for call in emulator.calls())


def test_assignment_is_routed_before_the_action_reads_completed(emulator: Emulator) -> None:
    seen: list[tuple[str, int | None, str]] = []

    def hook(rip: ReservedIp, droplet: Droplet | None) -> None:
        action = next(iter(emulator.actions.values()))
        seen.append((rip.ip, droplet.id if droplet else None, action.status))

    emulator.on_assign = hook
    emulator.action_latency = 0.2
    with EmulatorServer(emulator) as server:
        status, _, posted = _call(
            f"{server.url}/v2/reserved_ips/{RESERVED_IP}/actions",
            "POST",
            {"type": "assign", "droplet_id": 11},
        )
        busy, _, _ = _call(
            f"{server.url}/v2/reserved_ips/{RESERVED_IP}/actions",
            "POST",
            {"type": "assign", "droplet_id": 11},
        )
        action_url = f"{server.url}/v2/actions/{posted['action']['id']}"
        deadline = time.monotonic() + 2
        while _call(action_url)[2]["action"]["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.02)

    assert (status, posted["action"]["status"], busy) == (201, "in-progress", 422)
    assert seen == [(RESERVED_IP, 11, "in-progress")]
    assert emulator.holder(RESERVED_IP) == 11


def test_metadata_answers_by_source_address(emulator: Emulator, url: str) -> None:
    unknown = _call(f"{url}/metadata/v1.json", token=None)[0]
    emulator.bind_source("127.0.0.1", 11)
    status, _, meta = _call(f"{url}/metadata/v1.json", token=None)

    assert unknown == 404
    assert status == 200
    assert meta["droplet_id"] == 11
    assert meta["interfaces"]["private"][0]["ipv4"]["ip_address"] == "10.10.0.2"


def test_the_emulator_runs_as_a_process_from_a_state_file_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    state = {
        "droplets": [
            {"id": 5, "name": "n", "private_ip": "10.10.0.5", "public_ip": "198.51.100.5"}
        ],
        "reserved_ips": [{"ip": RESERVED_IP, "droplet_id": 5}],
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    (tmp_path / "token").write_text(TOKEN)
    command = [sys.executable, "-m", "lab.emulator", "--listen", "127.0.0.1:0"]
    command += ["--state", str(tmp_path / "state.json"), "--token-file", str(tmp_path / "token")]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split("listening on ")[1].strip()
        status, _, body = _call(f"{url}/v2/reserved_ips/{RESERVED_IP}")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)

    assert status == 200
    assert body["reserved_ip"]["droplet"]["id"] == 5
    assert code == 0


def test_the_new_holder_is_visible_only_once_the_ip_routes_to_it() -> None:
    """An agent that reads the new holder (maintenance on says done) must find clients
    already reaching it, so the lab routes before the API shows the move."""
    seen: list[int | None] = []
    emulator = Emulator(token=TOKEN, action_latency=0)
    emulator.on_assign = lambda rip, _droplet: seen.append(emulator.holder(rip.ip))
    droplets = [
        emulator.add_droplet(n, f"10.10.0.{i}", f"198.51.100.{i}", [TAG])
        for i, n in enumerate(("a", "b"), start=2)
    ]
    emulator.add_reserved_ip(RESERVED_IP)
    emulator.assign_now(RESERVED_IP, droplets[0].id)
    with EmulatorServer(emulator) as server:
        status, _, _ = _call(
            f"{server.url}/v2/reserved_ips/{RESERVED_IP}/actions",
            "POST",
            {"type": "assign", "droplet_id": droplets[1].id},
        )
        deadline = time.monotonic() + 5
        while emulator.holder(RESERVED_IP) != droplets[1].id and time.monotonic() < deadline:
            time.sleep(0.01)

    assert status == 201
    assert seen == [None, droplets[0].id]
    assert emulator.holder(RESERVED_IP) == droplets[1].id
