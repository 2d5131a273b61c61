"""The agent's API client under a hostile or broken API: the token stays on api_base_url and
out of every message, and slow, huge or malformed answers are bad answers within the bounds."""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from cloudinit.agent.api import DigitalOcean
from cloudinit.agent.config import load_config
from cloudinit.agent.errors import AgentError
from cloudinit.agent.transport import MAX_BODY
from lab.emulator import Fault
from tests.agent_harness import RESERVED_IP, TOKEN, AgentRun, Cloud, Node

RESERVED = f"/v2/reserved_ips/{RESERVED_IP}"
ACTIONS = f"{RESERVED}/actions"
SLACK = 1.5
"""Seconds a bounded run may overrun its bound on a loaded 2-core machine."""


def _timed(node: Node, *args: str, bound: float) -> tuple[AgentRun, float]:
    """The run and its duration; fails (without waiting for it) if it outlasts bound + SLACK."""
    started = time.monotonic()
    thread, result = node.run_in_thread(*args)
    thread.join(timeout=bound + SLACK)
    took = time.monotonic() - started
    assert result, f"`{' '.join(args)}` still running after {took:.1f}s (bound {bound}s)"
    return result[0], took


# -- the token never leaves api_base_url (issue 7, item 2) --


class Listener:
    """A TCP port nobody should connect to. A connection waits in the kernel's accept queue
    even if the client has closed it, so after a run, `connected()` says whether one came."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.address = f"{host}:{self.port}"

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


@pytest.fixture
def listeners() -> Iterator[tuple[Listener, Listener]]:
    """One on another host (127.0.0.2), one on the API's host (127.0.0.1) at another port."""
    other_host, other_port = Listener("127.0.0.2"), Listener("127.0.0.1")
    try:
        yield other_host, other_port
    finally:
        other_host.sock.close()
        other_port.sock.close()


def test_the_listeners_see_a_connection(listeners: tuple[Listener, Listener]) -> None:
    """The check the hostile-link test relies on can see a connection."""
    for listener in listeners:
        assert not listener.connected()
        with socket.create_connection((listener.host, listener.port), timeout=2):
            pass
        assert listener.connected()


HOSTILE_NEXT = [
    "@{other}/v2/droplets?page=2",
    "//{other}/v2/droplets?page=2",
    "http://{other}/v2/droplets?page=2",
    "http://{api}@{other}/v2/droplets?page=2",
    "https://{api}/v2/droplets?page=2",
    "http://127.0.0.1:{port}/v2/droplets?page=2",
    ":{port}/v2/droplets?page=2",
    ".evil.example/v2/droplets?page=2",
    "/v2/reserved_ips?page=2",
]


@pytest.mark.parametrize("link", HOSTILE_NEXT)
def test_a_next_page_link_off_api_base_url_is_refused_and_nothing_else_is_contacted(
    cloud: Cloud, node: Node, listeners: tuple[Listener, Listener], link: str
) -> None:
    other_host, other_port = listeners
    api = cloud.url.removeprefix("http://")
    hostile = link.format(other=other_host.address, api=api, port=other_port.port)
    page = {
        "droplets": [d.to_api() for d in cloud.droplets],
        "links": {"pages": {"next": hostile}},
        "meta": {"total": 3},
    }
    cloud.emulator.add_fault(Fault("GET", "/v2/droplets", status=200, body=page))

    run = node.run("peers")

    assert not other_host.connected(), "the token went to another host"
    assert not other_port.connected(), "the token went to another port"
    assert len(cloud.emulator.calls("GET", "/v2/droplets")) == 1
    assert run.code == 1
    assert "not following the droplet list's next page link" in run.log
    assert TOKEN not in run.log


# -- bounds on time and size, and answers of the wrong shape (issue 7, item 4) --


def test_a_dripping_body_cannot_stretch_a_claim_past_claim_timeout(
    cloud: Cloud, node: Node
) -> None:
    node.configure(claim_timeout=2.0, request_timeout=1.0)
    cloud.emulator.add_fault(Fault.drip(0.4, "GET", RESERVED, times=None))

    run, took = _timed(node, "claim", bound=2.0)

    assert run.code == 1, run.log
    assert "gave up claiming" in run.log
    assert took < 2.0 + SLACK
    assert cloud.emulator.calls("POST", ACTIONS) == []


def test_a_dripping_body_cannot_stretch_one_request_past_request_timeout(
    cloud: Cloud, node: Node
) -> None:
    node.configure(request_timeout=1.0)
    cloud.emulator.add_fault(Fault.drip(0.4, "GET", "/v2/droplets"))

    run, took = _timed(node, "peers", bound=1.0)

    assert run.code == 1
    assert "GET /v2/droplets" in run.log
    assert "timed out" in run.log
    assert took < 1.0 + SLACK


def test_an_endless_body_is_cut_off_after_the_size_cap_and_the_claim_retries(
    cloud: Cloud, node: Node
) -> None:
    flood = cloud.emulator.add_fault(Fault.flood(64 * MAX_BODY, "GET", RESERVED))

    run = node.run("claim")

    assert run.code == 0, run.log
    assert cloud.holder() == node.droplet.id
    assert f"answer of more than {MAX_BODY} bytes; not reading the rest" in run.log
    assert flood.sent < 32 * MAX_BODY, "the agent read on past the cap"


def test_a_body_announced_bigger_than_the_cap_is_refused_before_reading_it(
    cloud: Cloud, node: Node
) -> None:
    huge = {"reserved_ip": {"droplet": None}, "padding": "x" * (2 * MAX_BODY)}
    cloud.emulator.add_fault(Fault("GET", RESERVED, status=200, body=huge))

    run = node.run("claim")

    assert run.code == 0, run.log
    assert cloud.holder() == node.droplet.id
    assert f"more than {MAX_BODY} bytes" in run.log


def _droplet(**fields: Any) -> dict[str, Any]:
    return {"id": 1234, "name": "ha-web-test-1", "tags": ["ha-web-test"]} | fields


WRONG_HOLDER_ANSWERS = {
    "droplet-a-string": {"reserved_ip": {"droplet": "ha-web-test-1"}},
    "droplet-a-list": {"reserved_ip": {"droplet": [1234]}},
    "networks-a-string": {"reserved_ip": {"droplet": _droplet(networks="private")}},
    "v4-a-dict": {"reserved_ip": {"droplet": _droplet(networks={"v4": {"type": "private"}})}},
    "v4-of-strings": {"reserved_ip": {"droplet": _droplet(networks={"v4": ["10.10.0.3"]})}},
    "ip-a-number": {
        "reserved_ip": {
            "droplet": _droplet(networks={"v4": [{"type": "private", "ip_address": 7}]})
        }
    },
    "public-ip-names-a-host": {
        "reserved_ip": {
            "droplet": _droplet(
                networks={"v4": [{"type": "public", "ip_address": "198.51.100.2@127.0.0.9"}]}
            )
        }
    },
    "id-a-string": {"reserved_ip": {"droplet": _droplet(id="1234")}},
    "tags-a-string": {"reserved_ip": {"droplet": _droplet(tags="ha-web-test")}},
    "reserved-ip-a-string": {"reserved_ip": RESERVED_IP},
    "a-list": [RESERVED_IP],
    "no-reserved-ip": {"droplet": None},
}


@pytest.mark.parametrize("answer", WRONG_HOLDER_ANSWERS.values(), ids=WRONG_HOLDER_ANSWERS.keys())
def test_a_holder_answer_of_the_wrong_shape_is_a_bad_answer_and_the_claim_retries(
    cloud: Cloud, node: Node, answer: Any
) -> None:
    cloud.emulator.add_fault(Fault("GET", RESERVED, status=200, body=answer))

    run = node.run("claim")

    assert run.code == 0, run.log
    assert cloud.holder() == node.droplet.id
    assert "bad reserved IP answer" in run.log


WRONG_ACTION_ANSWERS = {
    "action-a-string": {"action": "completed"},
    "id-a-string": {"action": {"id": "7", "status": "completed"}},
    "status-a-number": {"action": {"id": 7, "status": 1}},
}


@pytest.mark.parametrize("answer", WRONG_ACTION_ANSWERS.values(), ids=WRONG_ACTION_ANSWERS.keys())
def test_an_action_answer_of_the_wrong_shape_is_a_bad_answer_and_the_claim_retries(
    cloud: Cloud, node: Node, answer: Any
) -> None:
    cloud.emulator.add_fault(Fault("POST", ACTIONS, status=201, body=answer))

    run = node.run("claim")

    assert run.code == 0, run.log
    assert cloud.holder() == node.droplet.id
    assert "bad action answer" in run.log


WRONG_LIST_ANSWERS = {
    "droplets-a-string": {"droplets": "ha-web-test-0"},
    "droplet-a-string": {"droplets": ["ha-web-test-0"]},
    "networks-a-string": {"droplets": [_droplet(networks="private")]},
    "links-a-string": {"droplets": [], "links": "next"},
    "pages-a-list": {"droplets": [], "links": {"pages": ["next"]}},
    "next-a-number": {"droplets": [], "links": {"pages": {"next": 2}}},
}


@pytest.mark.parametrize("answer", WRONG_LIST_ANSWERS.values(), ids=WRONG_LIST_ANSWERS.keys())
def test_a_droplet_list_of_the_wrong_shape_fails_peers_cleanly(
    cloud: Cloud, node: Node, answer: Any
) -> None:
    cloud.emulator.add_fault(Fault("GET", "/v2/droplets", status=200, body=answer))

    run = node.run("peers")

    assert run.code == 1
    assert "bad droplet list answer" in run.log


# -- the token never reaches a log (issue 7, the token item) --

BAD_TOKEN_FILES = {
    "space": ("dop_v1_left right\n", "a space"),
    "line-break": ("dop_v1_first\nsecond\n", "a line break"),
    "carriage-return": ("dop_v1_a\rb\n", "a carriage return"),
    "tab": ("dop_v1_a\tb\n", "a tab"),
    "control": ("dop_v1_a\x1bb\n", "a control character"),
    "non-ascii": ("dop_v1_caf\u00e9\n", "a character that is not ASCII"),
}


@pytest.mark.parametrize(("content", "said"), BAD_TOKEN_FILES.values(), ids=BAD_TOKEN_FILES.keys())
def test_a_token_with_whitespace_or_control_characters_is_refused_without_showing_it(
    cloud: Cloud, node: Node, content: str, said: str
) -> None:
    node.token_file.write_text(content)

    run = node.run("claim")

    assert run.code == 1
    assert f"token file {node.token_file} holds {said} in the token (not shown)" in run.log
    assert "dop_v1_" not in run.log
    assert cloud.emulator.calls() == []


@pytest.mark.parametrize("newline", ["", "\n", "\r\n"], ids=["none", "lf", "crlf"])
def test_a_trailing_newline_is_not_part_of_the_token(
    cloud: Cloud, node: Node, newline: str
) -> None:
    node.token_file.write_text(TOKEN + newline)

    run = node.run("claim")

    assert run.code == 0, run.log
    assert cloud.holder() == node.droplet.id


def test_a_token_file_that_is_not_utf8_is_refused(cloud: Cloud, node: Node) -> None:
    node.token_file.write_bytes(b"dop_v1_\xff\xfe\n")

    run = node.run("claim")

    assert run.code == 1
    assert "is not text (UTF-8)" in run.log
    assert cloud.emulator.calls() == []


def test_a_header_http_refuses_never_puts_the_token_in_an_error(node: Node) -> None:
    secret = "dop_v1_never_shown"
    api = DigitalOcean(load_config(node.config_file), f"{secret}\r\nX-Injected: 1")

    with pytest.raises(AgentError) as caught:
        api.holder()

    shown = "".join(traceback.format_exception(caught.value))
    assert "header holds a character HTTP does not allow" in shown
    assert secret not in shown
    assert "Bearer" not in shown
