#!/usr/bin/python3
"""ha-web-agent: moves the cluster's reserved IP to this droplet when keepalived makes it MASTER.

Installed on every droplet as /usr/local/lib/ha-web/ha_web_agent.py and run through the launcher
/usr/local/bin/ha-web-agent. docs/internals.md describes its settings, files, users and the
failover path. It uses the standard library only, because it
runs on the distribution's python3 before anything else is installed.

Subcommands: notify, claim, peers, apply-peers, reconcile, status, maintenance.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import enum
import fcntl
import http.client
import ipaddress
import json
import logging
import logging.handlers
import os
import random
import signal
import stat
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")
LOG = logging.getLogger("ha-web-agent")
DEFAULT_CONFIG = "/etc/ha-web/agent.json"
CONFIG_ENV = "HA_WEB_AGENT_CONFIG"
MASTER = "MASTER"
BACKUP = "BACKUP"
TOKEN_SCOPES = "reserved_ip:update, droplet:read and actions:read"
HEALTH_FAILURES_BEFORE_CLAIM = 2
STATE_POLL_SECONDS = 0.1
DEFAULT_MAINTENANCE_TIMEOUT = 60.0
MAX_PAGES = 50


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class AgentError(Exception):
    """A problem the operator has to fix; the message says what and how."""


class FatalApiError(AgentError):
    """An API answer that retrying cannot fix (401, 403, 404, other 4xx)."""


class RetryableError(Exception):
    """A failure that may pass: 422 pending event, 429, 5xx, timeouts, lost connections."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# ---------------------------------------------------------------------------
# Settings (/etc/ha-web/agent.json)
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Logging: syslog when there is one (keepalived's notify has no stderr), else stderr
# ---------------------------------------------------------------------------


def setup_logging(target: str, echo_warnings: bool = False) -> None:
    """echo_warnings: with syslog, also write warnings and errors to stderr."""
    for old in list(LOG.handlers):
        LOG.removeHandler(old)
        old.close()
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    to_syslog = target == "syslog" or (target == "auto" and os.path.exists("/dev/log"))
    if to_syslog:
        syslog = logging.handlers.SysLogHandler(address="/dev/log")
        syslog.ident = "ha-web-agent: "
        syslog.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        LOG.addHandler(syslog)
    if to_syslog and not echo_warnings:
        return
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("ha-web-agent: %(levelname)s %(message)s"))
    if to_syslog:
        stream.setLevel(logging.WARNING)
    LOG.addHandler(stream)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Readers (keepalived, other agent runs) never see a half-written file.

    Root writes into /run/ha-web, which ha-web owns: the temporary file is created exclusively
    (O_EXCL never follows a planted symlink) and its mode set through the descriptor, not the
    name, which ha-web could swap for a symlink in between."""
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or unreadable as JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        LOG.warning("%s is not valid JSON; ignoring it", path)
        return None


def write_json(path: Path, value: object) -> None:
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_token(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AgentError(
            f"token file {path} not found; set ha-web:failoverToken and redeploy"
        ) from None
    except PermissionError:
        raise AgentError(
            f"cannot reach token file {path}; run the agent as the ha-web user"
        ) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(info.st_mode)
        raise AgentError(
            f"token file {path} is open to group or others (mode {mode:04o}); "
            f"refusing to use it. Run: chmod 600 {path}"
        )
    try:
        token = path.read_text().strip()
    except PermissionError:
        raise AgentError(
            f"cannot read token file {path}; run the agent as its owner (ha-web)"
        ) from None
    if not token:
        raise AgentError(f"token file {path} is empty; put the failover token in it")
    return token


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


class HttpReply(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


def http_request(
    method: str,
    url: str,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> HttpReply:
    """One HTTP exchange, logged as method, path, status and duration (never headers).

    http.client rather than urllib.request: it follows no redirect (one would carry the bearer
    token elsewhere), uses no proxy (the metadata service and the lab must be reached
    directly), and leaves out urllib.request's imports, about 5 ms of every notify's start."""
    parts = urllib.parse.urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.monotonic()
    try:
        reply = _exchange(method, parts, path, timeout, headers=headers or {}, body=body)
    except RetryableError as exc:
        LOG.warning("%s %s -> %s after %.3fs", method, path, exc, time.monotonic() - started)
        raise
    LOG.info("%s %s -> %d in %.3fs", method, path, reply.status, time.monotonic() - started)
    return reply


def _exchange(
    method: str,
    parts: urllib.parse.SplitResult,
    path: str,
    timeout: float,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
) -> HttpReply:
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=dict(headers))
        response = connection.getresponse()
        return HttpReply(response.status, _lower(response.getheaders()), response.read())
    except TimeoutError:
        raise RetryableError("timed out") from None
    except (OSError, http.client.HTTPException) as exc:
        raise RetryableError(f"connection failed ({exc.__class__.__name__}: {exc})") from None
    finally:
        connection.close()


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}


def retry_after(headers: Mapping[str, str], now: float, rate_limited: bool) -> float | None:
    """Seconds to wait from `retry-after`, else, when rate limited, until DigitalOcean's
    `ratelimit-reset` (epoch seconds; every answer carries it, so only a 429 means it)."""
    value = headers.get("retry-after")
    if value:
        with contextlib.suppress(ValueError):
            return max(0.0, float(value))
        with contextlib.suppress(TypeError, ValueError):
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    reset = headers.get("ratelimit-reset")
    if reset and rate_limited:
        with contextlib.suppress(ValueError):
            return max(0.0, float(reset) - now)
    return None


# ---------------------------------------------------------------------------
# The DigitalOcean API and metadata service
# ---------------------------------------------------------------------------


class Droplet(NamedTuple):
    """The parts of a droplet the agent uses."""

    id: int
    name: str
    tags: tuple[str, ...]
    private_ip: str | None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Droplet:
        networks = raw.get("networks") or {}
        private = [
            n.get("ip_address") for n in networks.get("v4") or [] if n.get("type") == "private"
        ]
        return cls(
            id=int(raw["id"]),
            name=str(raw.get("name", "")),
            tags=tuple(str(t) for t in raw.get("tags") or ()),
            private_ip=str(private[0]) if private and private[0] else None,
        )


class Action(NamedTuple):
    id: int
    status: str


class DigitalOcean:
    """The few API calls the agent makes, each mapped to a clear outcome."""

    def __init__(self, cfg: Config, token: str) -> None:
        self.cfg = cfg
        self._token = token

    def call(self, method: str, path: str, payload: object = None) -> Any:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": "ha-web-agent",
        }
        body = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(payload).encode()
        url = self.cfg.api_base_url + path
        reply = http_request(method, url, self.cfg.request_timeout, headers, body)
        if 200 <= reply.status < 300:
            return reply.json()
        raise self._error(method, path, reply)

    def _error(self, method: str, path: str, reply: HttpReply) -> Exception:
        detail = reply.json()
        said = detail.get("message") if isinstance(detail, dict) else None
        what = f"{method} {path} answered {reply.status}" + (f" ({said})" if said else "")
        if reply.status in {422, 429} or reply.status >= 500:
            hint = retry_after(reply.headers, time.time(), rate_limited=reply.status == 429)
            return RetryableError(what, hint)
        if reply.status == 401:
            return FatalApiError(
                f"{what}: the API rejected the token in {self.cfg.token_file} "
                "(wrong, expired or revoked). Create a custom-scoped token with "
                f"{TOKEN_SCOPES}, set it as ha-web:failoverToken and redeploy, "
                "or write it to that file"
            )
        if reply.status == 403:
            return FatalApiError(
                f"{what}: the token in {self.cfg.token_file} lacks a scope. It needs {TOKEN_SCOPES}"
            )
        if reply.status == 404:
            return FatalApiError(
                f"{what}: not found. Check that reserved_ip {self.cfg.reserved_ip} and this "
                "droplet exist in the token's team and that api_base_url "
                f"({self.cfg.api_base_url}) is right"
            )
        return FatalApiError(f"{what}; this is unexpected, check the agent's settings and version")

    def holder(self) -> Droplet | None:
        answer = self.call("GET", f"/v2/reserved_ips/{self.cfg.reserved_ip}")
        try:
            droplet = answer["reserved_ip"]["droplet"]
            return Droplet.from_api(droplet) if droplet else None
        except (KeyError, TypeError, ValueError):
            raise RetryableError("reserved IP answer has no reserved_ip.droplet") from None

    def assign(self, droplet_id: int) -> Action:
        payload = {"type": "assign", "droplet_id": droplet_id}
        return _action(
            self.call("POST", f"/v2/reserved_ips/{self.cfg.reserved_ip}/actions", payload)
        )

    def action(self, action_id: int) -> Action:
        return _action(
            self.call("GET", f"/v2/reserved_ips/{self.cfg.reserved_ip}/actions/{action_id}")
        )

    def tagged_droplets(self, tag: str) -> list[Droplet]:
        query = urllib.parse.urlencode({"tag_name": tag, "per_page": 200})
        path: str | None = f"/v2/droplets?{query}"
        found: list[Droplet] = []
        for _ in range(MAX_PAGES):
            if path is None:
                return found
            answer = self.call("GET", path)
            if not isinstance(answer, dict) or not isinstance(answer.get("droplets"), list):
                raise RetryableError("droplet list answer has no droplets")
            try:
                found += [Droplet.from_api(d) for d in answer["droplets"]]
            except (KeyError, TypeError, ValueError, AttributeError):
                raise RetryableError("droplet list answer has a droplet without an id") from None
            path = _next_page(answer)
        raise RetryableError(f"droplet list has more than {MAX_PAGES} pages")


def _action(answer: Any) -> Action:
    try:
        return Action(int(answer["action"]["id"]), str(answer["action"]["status"]))
    except (KeyError, TypeError, ValueError):
        raise RetryableError("action answer has no action.id and action.status") from None


def _next_page(answer: Mapping[str, Any]) -> str | None:
    """Only the path and query of `next` are used, so the token never leaves api_base_url."""
    link = ((answer.get("links") or {}).get("pages") or {}).get("next")
    if not link:
        return None
    parts = urllib.parse.urlsplit(str(link))
    return parts.path + (f"?{parts.query}" if parts.query else "")


class Identity(NamedTuple):
    """This droplet, as the metadata service describes it."""

    droplet_id: int
    private_ip: str


def fetch_identity(cfg: Config) -> Identity:
    """No token: the metadata service needs none, and must never see it."""
    url = f"{cfg.metadata_base_url}/metadata/v1.json"
    try:
        reply = http_request("GET", url, cfg.request_timeout)
    except RetryableError as exc:
        raise AgentError(
            f"metadata service {cfg.metadata_base_url} unreachable ({exc}); retry later"
        ) from None
    raw = reply.json()
    try:
        if reply.status != 200:
            raise ValueError
        return Identity(
            int(raw["droplet_id"]), str(raw["interfaces"]["private"][0]["ipv4"]["ip_address"])
        )
    except (KeyError, IndexError, TypeError, ValueError):
        raise AgentError(
            f"metadata at {url} (status {reply.status}) has no droplet_id or private IPv4; "
            "the droplet must be in a VPC with a private interface"
        ) from None


def load_identity(cfg: Config) -> Identity:
    """From the cache in data_dir; the metadata service is asked once, then never again."""
    cached = read_json(cfg.droplet_file)
    if isinstance(cached, dict):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return Identity(int(cached["droplet_id"]), str(cached["private_ip"]))
    identity = fetch_identity(cfg)
    try:
        write_json(cfg.droplet_file, identity._asdict())
    except OSError as exc:
        LOG.warning(
            "could not cache %s (%s); create %s owned by ha-web",
            cfg.droplet_file,
            exc,
            cfg.data_dir,
        )
    return identity


# ---------------------------------------------------------------------------
# Node state (/run/ha-web/state.json), written by notify
# ---------------------------------------------------------------------------


class NodeState(NamedTuple):
    state: str
    since: float
    previous: str | None = None
    previous_since: float | None = None
    keepalived_pid: int | None = None
    priority: int | None = None
    # (process start time in clock ticks, pid) of the notify that wrote this state:
    # keepalived starts notify processes in order, but they may reach the file out of order.
    notify_order: tuple[int, int] = (0, 0)

    @classmethod
    def from_json(cls, raw: Any) -> NodeState | None:
        if not isinstance(raw, dict):
            return None
        try:
            return cls(
                state=str(raw["state"]),
                since=float(raw["since"]),
                previous=_opt(str, raw.get("previous")),
                previous_since=_opt(float, raw.get("previous_since")),
                keepalived_pid=_opt(int, raw.get("keepalived_pid")),
                priority=_opt(int, raw.get("priority")),
                notify_order=_order(raw.get("notify_order", (0, 0))),
            )
        except (KeyError, TypeError, ValueError, IndexError):
            return None


def _opt(kind: Callable[[Any], T], value: Any) -> T | None:
    return None if value is None else kind(value)


def _order(value: Any) -> tuple[int, int]:
    ticks, pid = value
    return (int(ticks), int(pid))


def read_state(cfg: Config) -> NodeState | None:
    return NodeState.from_json(read_json(cfg.state_file))


def is_master(cfg: Config) -> bool:
    current = read_state(cfg)
    return current is not None and current.state == MASTER


def in_maintenance(cfg: Config) -> bool:
    """Read as keepalived's weight-0 track_file reads it: a number other than 0 means on; a
    missing, empty or non-numeric file means off. Unreadable: off, since keepalived (root)
    still reads it and keeps the node in FAULT."""
    try:
        words = cfg.maintenance_file.read_text().split()
    except FileNotFoundError:
        return False
    except OSError as exc:
        LOG.warning("cannot read %s (%s); assuming no maintenance", cfg.maintenance_file, exc)
        return False
    try:
        return bool(words) and int(words[0]) != 0
    except ValueError:
        return False


def _notify_order() -> tuple[int, int]:
    stat_line = Path("/proc/self/stat").read_text()
    start_ticks = int(stat_line.rsplit(")", 1)[1].split()[19])
    return (start_ticks, os.getpid())


@contextlib.contextmanager
def _locked(path: Path, blocking: bool) -> Iterator[bool]:
    """An flock on path; yields False when blocking is off and someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def record_transition(
    cfg: Config, new_state: str, priority: int, keepalived_pid: int
) -> NodeState | None:
    """Write the new state; None if a newer notification already wrote one."""
    order = _notify_order()
    with _locked(cfg.state_dir / "state.lock", blocking=True):
        old = read_state(cfg)
        if old is not None and old.notify_order > order:
            LOG.info(
                "ignoring %s: a later keepalived notification already recorded %s",
                new_state,
                old.state,
            )
            return None
        now = time.time()
        if old is None:
            since, previous, previous_since = now, None, None
        elif old.state == new_state:
            since, previous, previous_since = old.since, old.previous, old.previous_since
        else:
            since, previous, previous_since = now, old.state, old.since
        new = NodeState(new_state, since, previous, previous_since, keepalived_pid, priority, order)
        write_json(cfg.state_file, new._asdict())
    LOG.info("keepalived says %s (was %s, priority %d)", new_state, previous or "unknown", priority)
    return new


def settle_wait(current: NodeState, settle: float, now: float) -> float:
    """Seconds left before a fresh MASTER may claim (keepalived #2231).

    A MASTER that was BACKUP for a while heard no primary: it claims at once. One that just
    booted or left FAULT may not have heard the primary yet, so it must stay MASTER a while."""
    was_backup_long = (
        current.previous == BACKUP
        and current.previous_since is not None
        and current.since - current.previous_since >= settle
    )
    return 0.0 if was_backup_long else current.since + settle - now


def sleep_while_master(cfg: Config, seconds: float) -> bool:
    """Sleep; False as soon as state.json stops saying MASTER."""
    end = time.monotonic() + seconds
    while True:
        if not is_master(cfg):
            return False
        left = end - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(STATE_POLL_SECONDS, left))


def keepalived_alive(pid: int | None) -> bool:
    """A pid file or state.json may outlive keepalived, and pids get reused."""
    if not pid or pid <= 0:
        return False
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("keepalived")
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Claim: move the reserved IP here
# ---------------------------------------------------------------------------


class Outcome(enum.Enum):
    ASSIGNED = "assigned"
    ALREADY_HERE = "already here"
    NOT_MASTER = "not MASTER"
    MAINTENANCE = "in maintenance"
    BUSY = "another claim is running"
    GAVE_UP = "gave up"
    FAILED = "failed"

    @property
    def exit_code(self) -> int:
        return 1 if self in (Outcome.GAVE_UP, Outcome.FAILED) else 0


class _OutOfTimeError(Exception):
    pass


def backoff_delay(cfg: Config, attempt: int, hint: float | None) -> float:
    """Exponential with jitter, bounded by backoff_max; the server's hint is a floor."""
    base = min(cfg.backoff_max, cfg.backoff_initial * 2 ** min(attempt, 30))
    delay = random.uniform(base / 2, base)
    return max(delay, hint) if hint is not None else delay


class Claim:
    def __init__(self, cfg: Config, api: DigitalOcean, identity: Identity) -> None:
        self.cfg = cfg
        self.api = api
        self.me = identity
        self.deadline = time.monotonic() + cfg.claim_timeout

    def run(self) -> Outcome:
        with _locked(self.cfg.state_dir / "claim.lock", blocking=False) as mine:
            if not mine:
                LOG.info("a claim is already running; leaving it to finish")
                return Outcome.BUSY
            outcome = self._retrying()
        if outcome is Outcome.NOT_MASTER:
            LOG.info("not MASTER any more; claim of %s stopped", self.cfg.reserved_ip)
        return outcome

    def _retrying(self) -> Outcome:
        attempt = 0
        while True:
            if in_maintenance(self.cfg):
                LOG.info("not claiming %s: this node is in maintenance", self.cfg.reserved_ip)
                return Outcome.MAINTENANCE
            if not self._settled_master():
                return Outcome.NOT_MASTER
            try:
                return self._attempt()
            except FatalApiError as exc:
                LOG.error("claim of %s stopped: %s", self.cfg.reserved_ip, exc)
                return Outcome.FAILED
            except _OutOfTimeError as exc:
                return self._give_up(str(exc))
            except RetryableError as exc:
                delay = backoff_delay(self.cfg, attempt, exc.retry_after)
                attempt += 1
                if time.monotonic() + delay >= self.deadline:
                    return self._give_up(str(exc))
                LOG.warning("claim attempt %d failed (%s); retrying in %.2fs", attempt, exc, delay)
                if not sleep_while_master(self.cfg, delay):
                    return Outcome.NOT_MASTER

    def _give_up(self, last_error: str) -> Outcome:
        LOG.error(
            "gave up claiming %s after claim_timeout (%gs); last error: %s. "
            "The reconcile timer will try again",
            self.cfg.reserved_ip,
            self.cfg.claim_timeout,
            last_error,
        )
        return Outcome.GAVE_UP

    def _settled_master(self) -> bool:
        while True:
            current = read_state(self.cfg)
            if current is None or current.state != MASTER:
                return False
            wait = settle_wait(current, self.cfg.settle_seconds, time.time())
            if wait <= 0:
                return True
            LOG.info(
                "MASTER after %s: waiting %.2fs to be sure it stays MASTER", current.previous, wait
            )
            if not sleep_while_master(self.cfg, wait):
                return False

    def _attempt(self) -> Outcome:
        holder = self.api.holder()
        if holder is not None and holder.id == self.me.droplet_id:
            LOG.info("%s is already on this droplet (%d)", self.cfg.reserved_ip, self.me.droplet_id)
            return Outcome.ALREADY_HERE
        if not is_master(self.cfg):
            return Outcome.NOT_MASTER
        held_by = f"{holder.name} ({holder.id})" if holder else "nobody"
        LOG.info(
            "assigning %s to droplet %d; it is on %s",
            self.cfg.reserved_ip,
            self.me.droplet_id,
            held_by,
        )
        action = self.api.assign(self.me.droplet_id)
        while action.status != "completed":
            if action.status == "errored":
                raise RetryableError(f"assign action {action.id} errored")
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise _OutOfTimeError(f"assign action {action.id} still {action.status}")
            if not sleep_while_master(self.cfg, min(self.cfg.poll_interval, left)):
                return Outcome.NOT_MASTER
            action = self.api.action(action.id)
        LOG.info("%s is now on this droplet (action %d completed)", self.cfg.reserved_ip, action.id)
        return Outcome.ASSIGNED


def claim(cfg: Config) -> Outcome:
    if not is_master(cfg):
        LOG.info("not claiming %s: state.json does not say MASTER", cfg.reserved_ip)
        return Outcome.NOT_MASTER
    api = DigitalOcean(cfg, read_token(cfg.token_file))
    return Claim(cfg, api, load_identity(cfg)).run()


# ---------------------------------------------------------------------------
# Peers: who else is in the cluster (peers runs as ha-web, apply-peers as root)
# ---------------------------------------------------------------------------


class Member(NamedTuple):
    id: int
    name: str
    private_ip: str


class PeerSet(NamedTuple):
    me: Member
    peers: tuple[Member, ...]

    def to_json(self, fetched_at: float) -> dict[str, Any]:
        return {
            "self": self.me._asdict(),
            "peers": [p._asdict() for p in self.peers],
            "fetched_at": fetched_at,
        }

    @classmethod
    def from_json(cls, raw: Any) -> PeerSet | None:
        try:
            me = Member(**raw["self"])
            return cls(me, tuple(Member(**p) for p in raw["peers"]))
        except (KeyError, TypeError):
            return None


def read_peers(cfg: Config) -> PeerSet | None:
    return PeerSet.from_json(read_json(cfg.peers_file))


VPC_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


def private_ipv4(value: str) -> ipaddress.IPv4Address:
    """A VPC address. DigitalOcean VPCs use RFC 1918 ranges only; Python's is_private is wider."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IPv4 address in dotted form")
    address = ipaddress.IPv4Address(value)
    if not any(address in net for net in VPC_RANGES):
        raise ValueError(f"{value} is not a private IPv4 address (10/8, 172.16/12, 192.168/16)")
    return address


def _members(droplets: list[Droplet]) -> list[Member]:
    members = []
    for droplet in droplets:
        try:
            members.append(
                Member(droplet.id, droplet.name, str(private_ipv4(droplet.private_ip or "")))
            )
        except ValueError:
            LOG.warning(
                "droplet %s (%d) has no private IPv4 (%s); skipping it",
                droplet.name,
                droplet.id,
                droplet.private_ip,
            )
    return members


def refresh_peers(cfg: Config) -> int:
    me = load_identity(cfg)
    known = read_peers(cfg)
    has_known = known is not None and bool(known.peers)
    try:
        members = _members(
            DigitalOcean(cfg, read_token(cfg.token_file)).tagged_droplets(cfg.cluster_tag)
        )
    except (FatalApiError, RetryableError) as exc:
        if has_known:
            LOG.warning(
                "could not list droplets tagged %s (%s); keeping the known peers",
                cfg.cluster_tag,
                exc,
            )
            return 0
        LOG.error(
            "could not list droplets tagged %s (%s) and no peer is known yet", cfg.cluster_tag, exc
        )
        return 1
    peers = tuple(
        sorted((m for m in members if m.id != me.droplet_id), key=lambda m: (m.name, m.id))
    )
    if not peers:
        if has_known:
            LOG.warning(
                "the API lists no other droplet tagged %s; keeping the known peers", cfg.cluster_tag
            )
            return 0
        LOG.error(
            "no peer known: no other droplet with tag %s has a private IPv4. "
            "Check the tag and that the other droplets are in the same VPC",
            cfg.cluster_tag,
        )
        return 1
    names = {m.id: m.name for m in members}
    current = PeerSet(
        Member(me.droplet_id, names.get(me.droplet_id, cfg.droplet_name), me.private_ip), peers
    )
    if current == known:
        return 0
    write_json(cfg.peers_file, current.to_json(time.time()))
    LOG.info("peers now %s", ", ".join(f"{p.name}={p.private_ip}" for p in peers))
    return 0


def render_peers_conf(peers: PeerSet) -> str:
    lines = [
        "# Written by ha-web-agent apply-peers from the DigitalOcean API; rewritten on change.",
        f"unicast_src_ip {peers.me.private_ip}",
        "unicast_peer {",
        *(f"  {p.private_ip}" for p in peers.peers),
        "}",
    ]
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, text: str) -> bool:
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    write_atomic(path, text)
    return True


def update_nft_set(cfg: Config, peers: PeerSet) -> None:
    """The firewall lets VRRP in only from these addresses. Missing nft or table: warn only."""
    # Imported here: only apply-peers needs them, and they cost notify's start about 3 ms.
    import shutil
    import subprocess

    nft = shutil.which("nft")
    if nft is None:
        LOG.warning("nft not found; the firewall's VRRP peer set was not updated. Install nftables")
        return
    target = f"inet {cfg.nft_table} vrrp_peers"
    script = f"flush set {target}\n"
    if peers.peers:
        script += f"add element {target} {{ {', '.join(p.private_ip for p in peers.peers)} }}\n"
    result = subprocess.run(
        [nft, "-f", "-"], input=script, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        LOG.warning(
            "could not update nft set %s (%s); is %s loaded? VRRP from peers may be dropped",
            target,
            result.stderr.strip(),
            cfg.nft_table,
        )


def reload_keepalived(cfg: Config) -> None:
    try:
        pid = int(cfg.keepalived_pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if keepalived_alive(pid):
        os.kill(pid, signal.SIGHUP)
        LOG.info("peers changed: reloaded keepalived (pid %d)", pid)


def apply_peers(cfg: Config) -> int:
    peers = read_peers(cfg)
    if peers is None:
        write_if_changed(cfg.hold_file, "1\n")
        LOG.error(
            "no peers file %s: run `ha-web-agent peers` as ha-web first; keepalived stays held",
            cfg.peers_file,
        )
        return 1
    try:
        for member in (peers.me, *peers.peers):
            private_ipv4(member.private_ip)
    except ValueError as exc:
        LOG.error(
            "refusing %s: %s. Nothing was changed; delete the file and run peers again",
            cfg.peers_file,
            exc,
        )
        return 1
    changed = write_if_changed(cfg.peers_conf, render_peers_conf(peers))
    update_nft_set(cfg, peers)
    held = not peers.peers
    if write_if_changed(cfg.hold_file, "1\n" if held else "0\n"):
        LOG.info("keepalived %s", "held: no peer known" if held else "released: peers known")
    if changed:
        LOG.info("wrote %s for %d peer(s)", cfg.peers_conf, len(peers.peers))
        reload_keepalived(cfg)
    return 0


# ---------------------------------------------------------------------------
# Reconcile (timer): catch missed transitions without ping-pong
# ---------------------------------------------------------------------------


class Verdict(enum.Enum):
    HERE = "here"
    CLAIM = "claim"
    CHECK_HOLDER = "check the holder's health"


def judge(cfg: Config, me: Identity, holder: Droplet | None) -> Verdict:
    """Only a higher-priority, healthy member keeps the IP from a MASTER: so two MASTERs agree."""
    if holder is not None and holder.id == me.droplet_id:
        return Verdict.HERE
    if holder is None or cfg.cluster_tag not in holder.tags:
        return Verdict.CLAIM
    mine = cfg.priorities.get(cfg.droplet_name, 0)
    theirs = cfg.priorities.get(holder.name)
    if theirs is not None and theirs < mine:
        return Verdict.CLAIM
    return Verdict.CHECK_HOLDER


def health_url(cfg: Config, private_ip: str) -> str:
    return f"http://{private_ip}:{cfg.health_port}{cfg.health_path}"


def health_status(cfg: Config, private_ip: str) -> int | None:
    """The status a member's health URL answers; None when it does not answer."""
    try:
        return http_request("GET", health_url(cfg, private_ip), cfg.request_timeout).status
    except RetryableError:
        return None


def holder_healthy(cfg: Config, holder: Droplet) -> bool:
    if holder.private_ip is None:
        return False
    answer = health_status(cfg, holder.private_ip)
    return answer is not None and 200 <= answer < 400


def count_failure(cfg: Config, holder_id: int) -> int:
    """Consecutive failed health checks of this holder, kept across runs in state_dir."""
    raw = read_json(cfg.reconcile_file)
    before = (
        raw.get("failures", 0) if isinstance(raw, dict) and raw.get("holder_id") == holder_id else 0
    )
    failures = int(before) + 1
    write_json(cfg.reconcile_file, {"holder_id": holder_id, "failures": failures})
    return failures


def reset_failures(cfg: Config) -> None:
    if cfg.reconcile_file.exists():
        write_json(cfg.reconcile_file, {"holder_id": None, "failures": 0})


def reconcile(cfg: Config) -> int:
    current = read_state(cfg)
    if current is None or not keepalived_alive(current.keepalived_pid):
        LOG.info("keepalived's VRRP process from state.json is not running; nothing to reconcile")
        return 0
    if current.state != MASTER:
        reset_failures(cfg)
        return 0
    if in_maintenance(cfg):
        LOG.info("MASTER but in maintenance: leaving %s where it is", cfg.reserved_ip)
        return 0
    api = DigitalOcean(cfg, read_token(cfg.token_file))
    me = load_identity(cfg)
    try:
        holder = api.holder()
    except (FatalApiError, RetryableError) as exc:
        LOG.error("reconcile could not read %s: %s", cfg.reserved_ip, exc)
        return 1
    verdict = judge(cfg, me, holder)
    if verdict is Verdict.HERE:
        reset_failures(cfg)
        return 0
    if verdict is Verdict.CHECK_HOLDER and holder is not None:
        if holder_healthy(cfg, holder):
            reset_failures(cfg)
            LOG.info(
                "%s is on %s, a healthy higher-priority member; leaving it",
                cfg.reserved_ip,
                holder.name,
            )
            return 0
        failures = count_failure(cfg, holder.id)
        if failures < HEALTH_FAILURES_BEFORE_CLAIM:
            LOG.warning(
                "%s holds %s but failed its health check (%d in a row)",
                holder.name,
                cfg.reserved_ip,
                failures,
            )
            return 0
    reset_failures(cfg)
    LOG.info(
        "MASTER without %s (on %s): claiming it",
        cfg.reserved_ip,
        holder.name if holder else "nobody",
    )
    return Claim(cfg, api, me).run().exit_code


# ---------------------------------------------------------------------------
# Maintenance: a planned switchover (as root or ha-web; both may replace the file)
# ---------------------------------------------------------------------------


def set_maintenance(cfg: Config, on: bool) -> None:
    """keepalived tracks this file (weight 0): 1 puts the node in FAULT, 0 lets it out."""
    try:
        write_atomic(cfg.maintenance_file, "1\n" if on else "0\n")
    except PermissionError:
        raise AgentError(
            f"cannot write {cfg.maintenance_file}: run as root or as ha-web "
            "(sudo ha-web-agent maintenance ...)"
        ) from None
    except FileNotFoundError:
        raise AgentError(
            f"{cfg.maintenance_file.parent} does not exist: run `systemd-tmpfiles --create`"
        ) from None
    LOG.info("maintenance %s (set by uid %d)", "on" if on else "off", os.getuid())


def healthy_peer(cfg: Config) -> tuple[Member | None, str]:
    """A peer keepalived knows whose health URL answers 2xx, or why there is none."""
    peers = read_peers(cfg)
    if peers is None or not peers.peers:
        return None, f"no peer is known ({cfg.peers_file} lists none; check ha-web-peers.timer)"
    failures = []
    for peer in peers.peers:
        answer = health_status(cfg, peer.private_ip)
        if answer is not None and 200 <= answer < 300:
            return peer, ""
        failures.append(
            f"{health_url(cfg, peer.private_ip)} ({peer.name}): {answer or 'no answer'}"
        )
    return None, "no other member answers its health URL: " + "; ".join(failures)


def new_holder(cfg: Config, api: DigitalOcean, me: Identity) -> tuple[Droplet | None, str]:
    """The cluster member other than this one that holds the IP and answers 2xx, or why not."""
    ip = cfg.reserved_ip
    try:
        holder = api.holder()
    except RetryableError as exc:
        return None, f"the API did not answer ({exc})"
    if holder is None:
        return None, f"{ip} is assigned to no droplet"
    if holder.id == me.droplet_id:
        return None, f"{ip} is still on this droplet"
    if cfg.cluster_tag not in holder.tags:
        return None, f"{ip} is on {holder.name}, which is not tagged {cfg.cluster_tag}"
    answer = health_status(cfg, holder.private_ip) if holder.private_ip else None
    if answer is None or not 200 <= answer < 300:
        url = health_url(cfg, holder.private_ip or "?")
        return None, f"{ip} is on {holder.name}, but {url} answers {answer or 'nothing'}"
    return holder, ""


def wait_for_takeover(
    cfg: Config, api: DigitalOcean, me: Identity, timeout: float
) -> tuple[Droplet | None, str]:
    deadline = time.monotonic() + timeout
    while True:
        holder, why = new_holder(cfg, api, me)
        left = deadline - time.monotonic()
        if holder is not None or left <= 0:
            return holder, why
        time.sleep(min(cfg.poll_interval, left))


def maintenance_on(cfg: Config, timeout: float, force: bool) -> int:
    """Done only when another member holds the IP and answers: then this node may be touched."""
    api = DigitalOcean(cfg, read_token(cfg.token_file))
    me = load_identity(cfg)
    if not force:
        peer, why = healthy_peer(cfg)
        if peer is None:
            LOG.error(
                "refusing maintenance on: %s. Nothing could serve the site while %s is "
                "touched. Bring another member back first, or pass --force",
                why,
                cfg.droplet_name,
            )
            return 1
    set_maintenance(cfg, True)
    print(
        f"maintenance on: keepalived puts {cfg.droplet_name} in FAULT; waiting up to "
        f"{timeout:g}s for {cfg.reserved_ip} to move to a member that answers",
        flush=True,
    )
    undo = "undo with `ha-web-agent maintenance off`"
    try:
        holder, why = wait_for_takeover(cfg, api, me, timeout)
    except FatalApiError as exc:
        LOG.error("maintenance stays on, but the API refused: %s. %s", exc, undo)
        return 1
    if holder is None:
        current = read_state(cfg)
        state = current.state if current else "unknown"
        hint = (
            ""
            if state == "FAULT"
            else f" keepalived here says {state}, not FAULT: is it running with a "
            f"keepalived.conf that tracks {cfg.maintenance_file}?"
        )
        LOG.error(
            "maintenance stays on, but %s did not move to a member that answers within %gs: "
            "%s.%s Check the other members and retry with a longer --timeout, or %s",
            cfg.reserved_ip,
            timeout,
            why,
            hint,
            undo,
        )
        return 1
    url = health_url(cfg, holder.private_ip or "?")
    print(
        f"done: {cfg.reserved_ip} is on {holder.name}, and {url} answers. {cfg.droplet_name} "
        "stays out of service until `ha-web-agent maintenance off`"
    )
    return 0


def maintenance_off(cfg: Config) -> int:
    set_maintenance(cfg, False)
    print(
        f"maintenance off: {cfg.droplet_name} leaves FAULT once its health check passes. "
        f"It becomes BACKUP or, with failback on, MASTER, and takes {cfg.reserved_ip} back "
        f"after settle_seconds ({cfg.settle_seconds:g}s)"
    )
    return 0


def maintenance_status(cfg: Config) -> int:
    current = read_state(cfg)
    print(
        f"maintenance {'on' if in_maintenance(cfg) else 'off'} ({cfg.maintenance_file}); "
        f"keepalived state: {current.state if current else 'unknown'}"
    )
    return 0


# ---------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------


def status(cfg: Config) -> dict[str, Any]:
    current = read_state(cfg)
    peers = read_peers(cfg)
    report: dict[str, Any] = {
        "state": current.state if current else None,
        "since": current.since if current else None,
        "previous": current.previous if current else None,
        "keepalived_running": keepalived_alive(current.keepalived_pid if current else None),
        "maintenance": in_maintenance(cfg),
        "reserved_ip": cfg.reserved_ip,
        "self": peers.me._asdict() if peers else None,
        "peers": [p._asdict() for p in peers.peers] if peers else [],
    }
    try:
        holder = DigitalOcean(cfg, read_token(cfg.token_file)).holder()
        report["holder"] = {"id": holder.id, "name": holder.name} if holder else None
    except (AgentError, RetryableError) as exc:
        report["holder"] = None
        report["holder_error"] = str(exc)
    return report


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def notify(cfg: Config, args: argparse.Namespace) -> int:
    new_state = str(args.state).upper()
    recorded = record_transition(cfg, new_state, args.priority, os.getppid())
    if recorded is None or new_state != MASTER:
        return 0
    return claim(cfg).exit_code


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ha-web-agent", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--config", help=f"settings file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    note = commands.add_parser("notify", help="keepalived's notify handler")
    note.add_argument("kind", help="INSTANCE or GROUP")
    note.add_argument("name", help="the VRRP instance")
    note.add_argument("state", help="MASTER, BACKUP, FAULT or STOP")
    note.add_argument("priority", type=int)
    commands.add_parser("claim", help="move the reserved IP here if this node is MASTER")
    commands.add_parser("peers", help="fetch the cluster's peers into peers.json (as ha-web)")
    commands.add_parser(
        "apply-peers", help="hand peers.json to keepalived and the firewall (as root)"
    )
    commands.add_parser("reconcile", help="claim the IP if MASTER and it is not here (timer)")
    commands.add_parser("status", help="print this node's view as JSON")
    maintenance = commands.add_parser(
        "maintenance",
        help="planned switchover: move the reserved IP off this node first (as root or ha-web)",
    )
    maintenance.add_argument(
        "action",
        choices=("on", "off", "status"),
        help="on: move the IP to another member and wait until it answers; off: rejoin",
    )
    maintenance.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_MAINTENANCE_TIMEOUT,
        help="seconds `on` waits for another member to hold the IP and answer (default: "
        f"{DEFAULT_MAINTENANCE_TIMEOUT:g})",
    )
    maintenance.add_argument(
        "--force",
        action="store_true",
        help="`on` even if no other member answers its health URL (none can take over)",
    )
    return parser.parse_args(argv)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return seconds


def maintenance(cfg: Config, args: argparse.Namespace) -> int:
    match args.action:
        case "on":
            return maintenance_on(cfg, args.timeout, args.force)
        case "off":
            return maintenance_off(cfg)
        case _:
            return maintenance_status(cfg)


def run_command(cfg: Config, args: argparse.Namespace) -> int:
    match args.command:
        case "notify":
            return notify(cfg, args)
        case "claim":
            return claim(cfg).exit_code
        case "peers":
            return refresh_peers(cfg)
        case "apply-peers":
            return apply_peers(cfg)
        case "reconcile":
            return reconcile(cfg)
        case "maintenance":
            return maintenance(cfg, args)
        case _:
            print(json.dumps(status(cfg), indent=2, sort_keys=True))
            return 0


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when done or nothing to do, 1 when the job failed, 2 on bad settings."""
    args = parse_args(argv)
    setup_logging("auto")
    try:
        cfg = load_config(config_path(args.config))
    except AgentError as exc:
        LOG.error("%s", exc)
        return 2
    # An operator runs maintenance by hand: its warnings and errors must reach the terminal too.
    setup_logging(cfg.log_target, echo_warnings=args.command == "maintenance")
    try:
        return run_command(cfg, args)
    except AgentError as exc:
        LOG.error("%s", exc)
    except OSError as exc:
        LOG.error(
            "%s: %s. Check that %s and %s exist and belong to ha-web (systemd-tmpfiles --create)",
            exc.filename or "file access",
            exc.strerror or exc,
            cfg.state_dir,
            cfg.data_dir,
        )
    return 1


if __name__ == "__main__":
    sys.exit(main())
