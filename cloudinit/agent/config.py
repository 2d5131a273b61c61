"""The agent's settings, read from /etc/ha-web/agent.json, one clear message per bad key."""

from __future__ import annotations

import ipaddress
import json
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import AgentError

DEFAULT_CONFIG = "/etc/ha-web/agent.json"
ROLE_PATH = "/.ha-web/role"
"""Where every node's nginx serves its role file, on every address (cloudinit/paths.py)."""
CONFIG_ENV = "HA_WEB_AGENT_CONFIG"


# Records are NamedTuples, not dataclasses: importing dataclasses (and with it inspect) costs
# about 7 ms of every notify's start, on the path from keepalived to the assign call.
class Config(NamedTuple):
    reserved_ip: str
    cluster_tag: str
    droplet_name: str
    priorities: Mapping[str, int]
    api_base_url: str = "https://api.digitalocean.com"
    metadata_base_url: str = "http://169.254.169.254"
    token_file: Path = Path("/etc/ha-web/token")
    state_dir: Path = Path("/run/ha-web")
    data_dir: Path = Path("/var/lib/ha-web")
    peers_conf: Path = Path("/etc/keepalived/ha-web-peers.conf")
    hold_file: Path = Path("/run/ha-web/hold")
    maintenance_file: Path = Path("/run/ha-web/maintenance")
    keepalived_pid_file: Path = Path("/run/keepalived.pid")
    nft_table: str = "ha_web"
    health_port: int = 80
    health_path: str = "/healthz"
    claim_timeout: float = 60.0
    request_timeout: float = 2.0
    # A peer's public address answers in milliseconds; a dead one never does, and every crash
    # failover waits this long before the claim (docs/internals.md, "Judging the holder").
    holder_probe_timeout: float = 0.5
    settle_seconds: float = 2.4
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    poll_interval: float = 1.0
    log_target: str = "auto"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def droplet_file(self) -> Path:
        return self.data_dir / "droplet.json"

    @property
    def peers_file(self) -> Path:
        return self.data_dir / "peers.json"

    @property
    def reconcile_file(self) -> Path:
        return self.state_dir / "reconcile.json"

    @property
    def role_file(self) -> Path:
        """keepalived's state in one word; nginx serves it to the peers at ROLE_PATH."""
        return self.state_dir / "role"


LOG_TARGETS = ("auto", "syslog", "stderr")


class _ConfigReader:
    """Typed access to the raw JSON, with one clear message per bad key."""

    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path = path
        self.raw = raw

    def bad(self, key: str, want: str) -> AgentError:
        return AgentError(
            f"{self.path}: {key!r} must be {want}, got {self.raw.get(key)!r}; fix the file"
        )

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.bad(key, "a non-empty string")
        return value

    def path_value(self, key: str, default: Path) -> Path:
        return Path(self.text(key, str(default)))

    def number(self, key: str, default: float) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.bad(key, "a positive number")
        return float(value)

    def port(self, key: str, default: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise self.bad(key, "a TCP port (1-65535)")
        return value

    def priorities(self, key: str) -> dict[str, int]:
        value = self.raw.get(key)
        ok = isinstance(value, dict) and all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 255 for v in value.values()
        )
        if not ok or not isinstance(value, dict):
            raise self.bad(key, "an object mapping droplet names to priorities 1-255")
        return {str(k): int(v) for k, v in value.items()}


def load_config(path: Path) -> Config:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise AgentError(
            f"config file {path} not found; pass --config PATH or set {CONFIG_ENV}"
        ) from None
    except PermissionError:
        raise AgentError(
            f"cannot read config file {path}; run as root or the ha-web user"
        ) from None
    except json.JSONDecodeError as exc:
        raise AgentError(f"config file {path} is not valid JSON ({exc}); fix the file") from None
    if not isinstance(raw, dict):
        raise AgentError(f"config file {path} must hold a JSON object; fix the file")
    return _config_from(_ConfigReader(path, raw))


def _config_from(r: _ConfigReader) -> Config:
    defaults = Config("", "", "", {})
    cfg = Config(
        reserved_ip=r.text("reserved_ip"),
        cluster_tag=r.text("cluster_tag"),
        droplet_name=r.text("droplet_name"),
        priorities=r.priorities("priorities"),
        api_base_url=r.text("api_base_url", defaults.api_base_url).rstrip("/"),
        metadata_base_url=r.text("metadata_base_url", defaults.metadata_base_url).rstrip("/"),
        token_file=r.path_value("token_file", defaults.token_file),
        state_dir=r.path_value("state_dir", defaults.state_dir),
        data_dir=r.path_value("data_dir", defaults.data_dir),
        peers_conf=r.path_value("peers_conf", defaults.peers_conf),
        hold_file=r.path_value("hold_file", defaults.hold_file),
        maintenance_file=r.path_value("maintenance_file", defaults.maintenance_file),
        keepalived_pid_file=r.path_value("keepalived_pid_file", defaults.keepalived_pid_file),
        nft_table=r.text("nft_table", defaults.nft_table),
        health_port=r.port("health_port", defaults.health_port),
        health_path=r.text("health_path", defaults.health_path),
        claim_timeout=r.number("claim_timeout", defaults.claim_timeout),
        request_timeout=r.number("request_timeout", defaults.request_timeout),
        holder_probe_timeout=r.number("holder_probe_timeout", defaults.holder_probe_timeout),
        settle_seconds=r.number("settle_seconds", defaults.settle_seconds),
        backoff_initial=r.number("backoff_initial", defaults.backoff_initial),
        backoff_max=r.number("backoff_max", defaults.backoff_max),
        poll_interval=r.number("poll_interval", defaults.poll_interval),
        log_target=r.text("log_target", defaults.log_target),
    )
    try:
        ipaddress.IPv4Address(cfg.reserved_ip)
    except ValueError:
        raise r.bad("reserved_ip", "an IPv4 address") from None
    for key in ("api_base_url", "metadata_base_url"):
        if not _is_http_url(getattr(cfg, key)):
            raise r.bad(key, "an http:// or https:// URL")
    if cfg.log_target not in LOG_TARGETS:
        raise r.bad("log_target", f"one of {', '.join(LOG_TARGETS)}")
    if not cfg.health_path.startswith("/"):
        raise r.bad("health_path", "a path starting with /")
    return cfg


def _is_http_url(value: str) -> bool:
    url = urllib.parse.urlsplit(value)
    try:
        url.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)


def config_path(cli_value: str | None) -> Path:
    return Path(cli_value or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
