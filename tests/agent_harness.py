"""Runs the droplet agent against lab/emulator.py on 127.0.0.1, one temp dir per droplet.

The agent runs in-process (its `main`) for speed, or as a subprocess where a test needs to look
at the process itself. Timeouts, backoff and polling are short so the suite stays fast.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloudinit.agent.cli import main as agent_main
from cloudinit.agent.config import ROLE_PATH
from lab.emulator import Droplet, Emulator, EmulatorServer

REPO = Path(__file__).resolve().parents[1]
TOKEN = "dop_v1_harness_secret_7f3a9c2e5b1d"
RESERVED_IP = "203.0.113.10"
TAG = "ha-web-test"
NAMES = ("ha-web-test-0", "ha-web-test-1")
PRIORITIES = {NAMES[0]: 200, NAMES[1]: 190}

FAST_SETTINGS: dict[str, Any] = {
    "request_timeout": 0.5,
    "claim_timeout": 5.0,
    "settle_seconds": 0.3,
    "backoff_initial": 0.05,
    "backoff_max": 0.2,
    "poll_interval": 0.05,
    "log_target": "stderr",
}


@dataclass(frozen=True)
class AgentRun:
    code: int
    log: str
    out: str = ""


@dataclass
class Node:
    """One droplet's agent: its settings, token, state and data dirs under root."""

    root: Path
    droplet: Droplet
    api_url: str
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for sub in ("etc", "run", "lib", "keepalived"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(TOKEN + "\n")
        self.token_file.chmod(0o600)
        self.configure()

    @property
    def config_file(self) -> Path:
        return self.root / "etc" / "agent.json"

    @property
    def token_file(self) -> Path:
        return self.root / "etc" / "token"

    @property
    def state_file(self) -> Path:
        return self.root / "run" / "state.json"

    @property
    def peers_file(self) -> Path:
        return self.root / "lib" / "peers.json"

    @property
    def droplet_file(self) -> Path:
        return self.root / "lib" / "droplet.json"

    @property
    def peers_conf(self) -> Path:
        return self.root / "keepalived" / "ha-web-peers.conf"

    @property
    def hold_file(self) -> Path:
        return self.root / "run" / "hold"

    @property
    def maintenance_file(self) -> Path:
        return self.root / "run" / "maintenance"

    @property
    def keepalived_pid_file(self) -> Path:
        return self.root / "run" / "keepalived.pid"

    def configure(self, **overrides: Any) -> None:
        self.settings |= overrides
        config = {
            "api_base_url": self.api_url,
            "metadata_base_url": self.api_url,
            "reserved_ip": RESERVED_IP,
            "cluster_tag": TAG,
            "droplet_name": self.droplet.name,
            "priorities": PRIORITIES,
            "token_file": str(self.token_file),
            "state_dir": str(self.root / "run"),
            "data_dir": str(self.root / "lib"),
            "peers_conf": str(self.peers_conf),
            "hold_file": str(self.hold_file),
            "maintenance_file": str(self.maintenance_file),
            "keepalived_pid_file": str(self.keepalived_pid_file),
            "nft_table": "ha_web_test",
            "health_port": 80,
            "health_path": "/healthz",
            **FAST_SETTINGS,
            **self.settings,
        }
        self.config_file.write_text(json.dumps(config))

    def cache_identity(self) -> None:
        ident = {"droplet_id": self.droplet.id, "private_ip": self.droplet.private_ip}
        self.droplet_file.write_text(json.dumps(ident))

    def set_state(
        self,
        state: str,
        *,
        for_seconds: float = 1.0,
        previous: str | None = "BACKUP",
        previous_for: float = 100.0,
        keepalived_pid: int | None = None,
    ) -> None:
        """state.json as notify leaves it; the defaults describe a settled MASTER."""
        since = time.time() - for_seconds
        record = {
            "state": state,
            "since": since,
            "previous": previous,
            "previous_since": since - previous_for if previous else None,
            "keepalived_pid": keepalived_pid,
            "priority": PRIORITIES.get(self.droplet.name),
        }
        self.state_file.write_text(json.dumps(record))

    def state(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.state_file.read_text())
        return loaded

    def run(self, *args: str) -> AgentRun:
        """The agent's main() in this process, its log and output captured."""
        log, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(log), contextlib.redirect_stdout(out):
            code = agent_main(["--config", str(self.config_file), *args])
        return AgentRun(code, log.getvalue(), out.getvalue())

    def run_in_thread(self, *args: str) -> tuple[threading.Thread, list[AgentRun]]:
        result: list[AgentRun] = []
        thread = threading.Thread(target=lambda: result.append(self.run(*args)), daemon=True)
        thread.start()
        return thread, result

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """The agent as its own process, with an environment that holds no secret."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        command = [
            sys.executable,
            "-m",
            "cloudinit.agent",
            "--config",
            str(self.config_file),
            *args,
        ]
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


@dataclass
class Cloud:
    """The emulator with two cluster droplets and the reserved IP, unassigned."""

    emulator: Emulator
    server: EmulatorServer
    droplets: list[Droplet]

    @property
    def url(self) -> str:
        return self.server.url

    def node(self, root: Path, index: int = 0, **settings: Any) -> Node:
        return Node(root / f"node{index}", self.droplets[index], self.url, dict(settings))

    def assigns(self) -> int:
        return len(self.emulator.calls("POST", "/v2/reserved_ips/*/actions"))

    def holder(self) -> int | None:
        return self.emulator.holder(RESERVED_IP)


@contextlib.contextmanager
def running_cloud(
    private_ips: tuple[str, str] = ("10.10.0.2", "10.10.0.3"),
    public_ips: tuple[str, str] = ("198.51.100.2", "198.51.100.3"),
) -> Iterator[Cloud]:
    """The droplets' addresses are only data unless a test serves on them."""
    emulator = Emulator(token=TOKEN, action_latency=0)
    droplets = [
        emulator.add_droplet(name, private, public, [TAG])
        for name, private, public in zip(NAMES, private_ips, public_ips, strict=True)
    ]
    emulator.add_reserved_ip(RESERVED_IP)
    with EmulatorServer(emulator) as server:
        yield Cloud(emulator, server, droplets)


FAKE_KEEPALIVED = """
import signal, sys, time
from pathlib import Path
Path("/proc/self/comm").write_text("keepalived")
signal.signal(signal.SIGHUP, lambda *_: open(sys.argv[1], "a").write("HUP\\n"))
while True:
    time.sleep(1)
"""


@dataclass(frozen=True)
class FakeKeepalived:
    """A live process whose comm is `keepalived`; it notes every SIGHUP in hup_file."""

    pid: int
    hup_file: Path

    def hups(self) -> int:
        return len(self.hup_file.read_text().splitlines()) if self.hup_file.exists() else 0

    def wait_for_hups(self, want: int, timeout: float = 2.0) -> int:
        """SIGHUPs seen, waiting for `want` of them and a little longer for any extra."""
        deadline = time.monotonic() + timeout
        while self.hups() < want and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        return self.hups()


@contextlib.contextmanager
def fake_keepalived(workdir: Path) -> Iterator[FakeKeepalived]:
    hup_file = workdir / "hups"
    proc = subprocess.Popen([sys.executable, "-c", FAKE_KEEPALIVED, str(hup_file)])
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "keepalived":
            if time.monotonic() > deadline:
                raise RuntimeError("the fake keepalived did not start")
            time.sleep(0.01)
        yield FakeKeepalived(proc.pid, hup_file)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)


class HealthServer:
    """A node's nginx on one address: `healthy` decides the health URL's answer, `role` the
    role file's (None: missing, so 404)."""

    def __init__(self, host: str, port: int) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b""
                if self.path == ROLE_PATH:
                    code = 404 if owner.role is None else 200
                    body = f"{owner.role}\n".encode() if owner.role else b""
                else:
                    code = 200 if owner.healthy else 503
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.healthy = True
        self.role: str | None = "MASTER"
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def health_servers(hosts: tuple[str, ...], port: int = 0) -> Iterator[list[HealthServer]]:
    """One server per host, all on the same port, as every droplet serves health_port."""
    servers: list[HealthServer] = []
    try:
        for host in hosts:
            servers.append(HealthServer(host, servers[0].port if servers else port))
        yield servers
    finally:
        for server in servers:
            server.close()
