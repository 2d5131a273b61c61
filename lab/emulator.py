"""An emulator of the DigitalOcean API and metadata service, as far as ha-web droplets use them.

It serves droplets by tag, reserved-IP get and assign/unassign actions that complete after a
configurable latency, per-droplet metadata answered by the caller's source address, DO's
bearer-token check and rate-limit headers, and faults a test or the lab schedules.

In unit tests: `with EmulatorServer(Emulator(token=...)) as server:` on 127.0.0.1:0.
In the lab, as a process inside a network namespace:

    python -m lab.emulator --listen 10.99.0.1:8080 --state lab.json --token-file token

and a controller changes it at run time through /_lab/ on the same server (see ADMIN_ROUTES).
Every call is logged (time, source, method, path, status); the token never is.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shlex
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_LATENCY = 2.0
RATE_LIMIT = 5000
RATE_WINDOW = 3600
TLS_HANDSHAKE_TIMEOUT = 10.0

PENDING_EVENT = {"id": "unprocessable_entity", "message": "Droplet already has a pending event."}
NOT_FOUND = {"id": "not_found", "message": "The resource you were accessing could not be found."}
UNAUTHORIZED = {"id": "unauthorized", "message": "Unable to authenticate you."}
TOO_MANY = {"id": "too_many_requests", "message": "API Rate limit exceeded."}
SERVER_ERROR = {"id": "server_error", "message": "Unexpected server-side error"}
FORBIDDEN = {"id": "forbidden", "message": "You are not authorized to perform this operation"}
DEFAULT_BODIES = {
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    422: PENDING_EVENT,
    429: TOO_MANY,
}


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


@dataclass
class Droplet:
    id: int
    name: str
    private_ip: str
    public_ip: str
    tags: list[str] = field(default_factory=list)
    region: str = "lab1"

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": "active",
            "locked": False,
            "tags": list(self.tags),
            "region": {"slug": self.region, "name": self.region},
            "networks": {
                "v4": [
                    {"ip_address": self.private_ip, "netmask": "255.255.255.0", "type": "private"},
                    {"ip_address": self.public_ip, "netmask": "255.255.255.0", "type": "public"},
                ],
                "v6": [],
            },
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "droplet_id": self.id,
            "hostname": self.name,
            "region": self.region,
            "tags": list(self.tags),
            "interfaces": {
                "private": [{"ipv4": {"ip_address": self.private_ip, "netmask": "255.255.255.0"}}],
                "public": [{"ipv4": {"ip_address": self.public_ip, "netmask": "255.255.255.0"}}],
            },
        }


@dataclass
class ReservedIp:
    ip: str
    droplet_id: int | None = None
    region: str = "lab1"


@dataclass
class Action:
    id: int
    type: str
    ip: str
    droplet_id: int | None
    status: str
    started_at: float
    completed_at: float | None = None
    region: str = "lab1"

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "type": self.type,
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at) if self.completed_at else None,
            "resource_id": self.ip,
            "resource_type": "reserved_ip",
            "region": {"slug": self.region, "name": self.region},
            "region_slug": self.region,
        }


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass
class Fault:
    """One scheduled misbehaviour for calls matching method and path (a glob, query excluded).

    kind "status" answers `status` with `body` and `headers`; "hang" sleeps `seconds`, then
    answers normally; "errored" lets the call through but makes the action it creates end
    errored; "drip" answers normally but sends the body one byte every `seconds`; "flood"
    answers 200 with `size` bytes of spaces and no Content-Length. `times` is how many calls
    it hits (None: all of them); `sent` counts the body bytes drip and flood wrote."""

    method: str = "*"
    path: str = "*"
    kind: str = "status"
    status: int = 500
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    size: int = 0
    times: int | None = 1
    hits: int = 0
    sent: int = 0
    hit: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @classmethod
    def pending_event(cls, method: str = "POST", path: str = "*", times: int | None = 1) -> Fault:
        return cls(method, path, status=422, body=PENDING_EVENT, times=times)

    @classmethod
    def rate_limited(
        cls, retry_after: float | None = 1, path: str = "*", times: int | None = 1
    ) -> Fault:
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        return cls("*", path, status=429, body=TOO_MANY, headers=headers, times=times)

    @classmethod
    def server_error(cls, method: str = "*", path: str = "*", times: int | None = 1) -> Fault:
        return cls(method, path, status=500, body=SERVER_ERROR, times=times)

    @classmethod
    def not_found(cls, method: str = "*", path: str = "*", times: int | None = 1) -> Fault:
        return cls(method, path, status=404, body=NOT_FOUND, times=times)

    @classmethod
    def hang(
        cls, seconds: float, method: str = "*", path: str = "*", times: int | None = 1
    ) -> Fault:
        return cls(method, path, kind="hang", seconds=seconds, times=times)

    @classmethod
    def drip(
        cls, seconds: float, method: str = "*", path: str = "*", times: int | None = 1
    ) -> Fault:
        return cls(method, path, kind="drip", seconds=seconds, times=times)

    @classmethod
    def flood(cls, size: int, method: str = "*", path: str = "*", times: int | None = 1) -> Fault:
        return cls(method, path, kind="flood", status=200, size=size, times=times)

    @classmethod
    def action_errored(
        cls, path: str = "/v2/reserved_ips/*/actions", times: int | None = 1
    ) -> Fault:
        return cls("POST", path, kind="errored", times=times)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Fault:
        keys = ("method", "path", "kind", "status", "body", "headers", "seconds", "size", "times")
        unknown = set(raw) - set(keys)
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; use {', '.join(keys)}")
        if raw.get("kind", "status") not in ("status", "hang", "errored", "drip", "flood"):
            raise ValueError("fault kind must be status, hang, errored, drip or flood")
        return cls(**raw)

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "hit"}

    def reply(self) -> Reply:
        body = self.body if self.body is not None else DEFAULT_BODIES.get(self.status, SERVER_ERROR)
        return Reply(self.status, body, dict(self.headers))


@dataclass(frozen=True)
class Call:
    time: float
    """When the answer was ready (after an assignment that completes at once is routed)."""
    source: str
    method: str
    path: str
    query: str
    status: int
    bearer: bool
    received: float
    """When the request arrived."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    source: str

    @classmethod
    def parse(
        cls, method: str, target: str, headers: dict[str, str], body: bytes, source: str
    ) -> Request:
        parts = urllib.parse.urlsplit(target)
        lowered = {k.lower(): v for k, v in headers.items()}
        return cls(method, parts.path, parts.query, lowered, body, source)


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    fault: Fault | None = None
    """A drip or flood fault: how the HTTP layer sends the body."""


AssignHook = Callable[[ReservedIp, Droplet | None], None]
ApiHandler = Callable[[re.Match[str], Request, bool], Reply]


# ---------------------------------------------------------------------------
# The emulator: state and behaviour, no HTTP
# ---------------------------------------------------------------------------


class Emulator:
    def __init__(
        self,
        token: str,
        action_latency: float = DEFAULT_LATENCY,
        region: str = "lab1",
        on_assign: AssignHook | None = None,
        max_per_page: int = 200,
    ) -> None:
        self.region = region
        self.action_latency = action_latency
        self.on_assign = on_assign
        self.max_per_page = max_per_page
        self.droplets: dict[int, Droplet] = {}
        self.reserved_ips: dict[str, ReservedIp] = {}
        self.actions: dict[int, Action] = {}
        self.faults: list[Fault] = []
        self.sources: dict[str, int] = {}
        self.call_log: list[Call] = []
        self.call_sink: Callable[[Call], None] | None = None
        self.files: dict[str, Path] = {}
        """URL path -> file served as is: what a droplet downloads at boot (keepalived's
        tarball). Not the API: no token, no rate limit, and faults never touch it."""
        self._token = token
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._timers: list[threading.Timer] = []
        self._next_id = 3000
        self._window_start = time.time()
        self._window_calls = 0

    # -- setup and control (tests call these directly; the lab through /_lab/) --

    def set_token(self, token: str) -> None:
        with self._lock:
            self._token = token

    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def add_droplet(
        self,
        name: str,
        private_ip: str,
        public_ip: str,
        tags: list[str] | None = None,
        droplet_id: int | None = None,
    ) -> Droplet:
        with self._lock:
            droplet = Droplet(
                droplet_id or self._new_id(),
                name,
                private_ip,
                public_ip,
                list(tags or []),
                self.region,
            )
            self.droplets[droplet.id] = droplet
            return droplet

    def remove_droplet(self, droplet_id: int) -> None:
        """Like destroying a droplet: a reserved IP it held becomes unassigned."""
        with self._lock:
            self.droplets.pop(droplet_id)
            for rip in self.reserved_ips.values():
                if rip.droplet_id == droplet_id:
                    rip.droplet_id = None
            self.sources = {a: d for a, d in self.sources.items() if d != droplet_id}

    def replace_droplet(
        self, droplet_id: int, private_ip: str, public_ip: str | None = None
    ) -> Droplet:
        """A rebuilt droplet: same name and tags, new id and new private IP."""
        with self._lock:
            old = self.droplets[droplet_id]
            self.remove_droplet(droplet_id)
            return self.add_droplet(old.name, private_ip, public_ip or old.public_ip, old.tags)

    def add_reserved_ip(self, ip: str, droplet_id: int | None = None) -> ReservedIp:
        with self._lock:
            rip = ReservedIp(ip, droplet_id, self.region)
            self.reserved_ips[ip] = rip
            return rip

    def holder(self, ip: str) -> int | None:
        with self._lock:
            return self.reserved_ips[ip].droplet_id

    def assign_now(self, ip: str, droplet_id: int | None) -> None:
        """Move the IP at once, as the lab's setup does; fires on_assign like an action would."""
        with self._lock:
            rip = self.reserved_ips[ip]
            droplet = self.droplets.get(droplet_id) if droplet_id else None
        if self.on_assign:
            self.on_assign(rip, droplet)
        with self._lock:
            rip.droplet_id = droplet_id

    def bind_source(self, address: str, droplet_id: int) -> None:
        """Answer metadata requests from this address as that droplet."""
        with self._lock:
            self.sources[address] = droplet_id

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def calls(self, method: str | None = None, path: str = "*") -> list[Call]:
        with self._lock:
            return [
                c
                for c in self.call_log
                if (method is None or c.method == method) and fnmatch.fnmatchcase(c.path, path)
            ]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "droplets": [asdict(d) for d in self.droplets.values()],
                "reserved_ips": [asdict(r) for r in self.reserved_ips.values()],
                "actions": [asdict(a) for a in self.actions.values()],
                "faults": [f.to_json() for f in self.faults],
                "sources": dict(self.sources),
                "action_latency": self.action_latency,
            }

    def idle(self, seconds: float) -> bool:
        """Wait; True as soon as the emulator stops."""
        return self._stopping.wait(seconds)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for timer in self._timers:
                timer.cancel()

    # -- requests --

    def handle(self, request: Request) -> Reply:
        if request.path.startswith("/_lab/"):
            return self._admin(request)
        received = time.time()
        reply = self._serve(request)
        bearer = "authorization" in request.headers
        r = request
        call = Call(
            time.time(), r.source, r.method, r.path, r.query, reply.status, bearer, received
        )
        with self._lock:
            self.call_log.append(call)
        if self.call_sink:
            self.call_sink(call)
        return reply

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    if fault.times is not None and fault.hits >= fault.times:
                        self.faults.remove(fault)
                    fault.hit.set()
                    return fault
        return None

    def serve_file(self, path: str, file: Path) -> None:
        """Answer GET `path` with the bytes of `file` (read at each request)."""
        with self._lock:
            self.files[path] = file

    def _serve(self, request: Request) -> Reply:
        path = request.path
        download = self.files.get(path) if request.method == "GET" else None
        if download is not None:
            return Reply(200, download.read_bytes(), content_type="application/octet-stream")
        fault = self._take_fault(request.method, path)
        if fault is not None and fault.kind == "status":
            return self._api_reply(fault.reply(), path)
        if fault is not None and fault.kind == "flood":
            return self._api_reply(Reply(fault.status, fault=fault), path)
        if fault is not None and fault.kind == "hang":
            self._stopping.wait(fault.seconds)
        reply = self._answer(request, errored=fault is not None and fault.kind == "errored")
        return replace(reply, fault=fault) if fault is not None and fault.kind == "drip" else reply

    def _answer(self, request: Request, errored: bool) -> Reply:
        path = request.path
        if path.startswith("/metadata/"):
            return self._metadata(path, request.source)
        if not path.startswith("/v2/"):
            return Reply(404, NOT_FOUND)
        if request.headers.get("authorization") != f"Bearer {self._token}":
            return self._api_reply(Reply(401, UNAUTHORIZED), path)
        return self._api_reply(self._api(request, errored), path)

    def _api_reply(self, reply: Reply, path: str) -> Reply:
        if not path.startswith("/v2/"):
            return reply
        with self._lock:
            now = time.time()
            if now - self._window_start >= RATE_WINDOW:
                self._window_start, self._window_calls = now, 0
            self._window_calls += 1
            limits = {
                "ratelimit-limit": str(RATE_LIMIT),
                "ratelimit-remaining": str(max(0, RATE_LIMIT - self._window_calls)),
                "ratelimit-reset": str(int(self._window_start + RATE_WINDOW)),
            }
        return replace(reply, headers=limits | reply.headers)

    # -- metadata --

    def _metadata(self, path: str, source: str) -> Reply:
        with self._lock:
            droplet_id = self.sources.get(source)
            if droplet_id is None:
                droplet_id = next(
                    (d.id for d in self.droplets.values() if source in (d.private_ip, d.public_ip)),
                    None,
                )
            droplet = self.droplets.get(droplet_id) if droplet_id is not None else None
        if droplet is None:
            return Reply(404, f"no droplet has address {source}\n", content_type="text/plain")
        if path == "/metadata/v1.json":
            return Reply(200, droplet.metadata())
        if path == "/metadata/v1/id":
            return Reply(200, f"{droplet.id}", content_type="text/plain")
        if path == "/metadata/v1/hostname":
            return Reply(200, droplet.name, content_type="text/plain")
        return Reply(404, "not found\n", content_type="text/plain")

    # -- API --

    def _api(self, request: Request, errored: bool) -> Reply:
        for route_method, pattern, handler in self._routes():
            match = re.fullmatch(pattern, request.path)
            if match and route_method == request.method:
                return handler(match, request, errored)
        return Reply(404, NOT_FOUND)

    def _routes(self) -> list[tuple[str, str, ApiHandler]]:
        return [
            ("GET", r"/v2/droplets", self._list_droplets),
            ("GET", r"/v2/droplets/(\d+)", self._get_droplet),
            ("GET", r"/v2/reserved_ips", self._list_reserved_ips),
            ("GET", r"/v2/reserved_ips/([^/]+)", self._get_reserved_ip),
            ("POST", r"/v2/reserved_ips/([^/]+)/actions", self._post_action),
            ("GET", r"/v2/reserved_ips/([^/]+)/actions/(\d+)", self._get_ip_action),
            ("GET", r"/v2/actions/(\d+)", self._get_action),
        ]

    def _list_droplets(self, _: re.Match[str], request: Request, __: bool) -> Reply:
        query = urllib.parse.parse_qs(request.query)
        tag = query.get("tag_name", [None])[0]
        per_page = min(self.max_per_page, int(query.get("per_page", ["20"])[0]))
        page = int(query.get("page", ["1"])[0])
        with self._lock:
            found = [d.to_api() for d in self.droplets.values() if tag is None or tag in d.tags]
        chunk = found[(page - 1) * per_page : page * per_page]
        pages: dict[str, str] = {}
        if page * per_page < len(found):
            rest = {k: v[0] for k, v in query.items()} | {
                "page": str(page + 1),
                "per_page": str(per_page),
            }
            # Absolute, like DigitalOcean's, but pointing back here: never at the real API.
            host = request.headers.get("host", "localhost")
            pages["next"] = f"http://{host}/v2/droplets?{urllib.parse.urlencode(rest)}"
        return Reply(
            200, {"droplets": chunk, "links": {"pages": pages}, "meta": {"total": len(found)}}
        )

    def _get_droplet(self, match: re.Match[str], *_: object) -> Reply:
        with self._lock:
            droplet = self.droplets.get(int(match[1]))
            return Reply(200, {"droplet": droplet.to_api()}) if droplet else Reply(404, NOT_FOUND)

    def _reserved_ip_json(self, rip: ReservedIp) -> dict[str, Any]:
        droplet = self.droplets.get(rip.droplet_id) if rip.droplet_id else None
        return {
            "ip": rip.ip,
            "droplet": droplet.to_api() if droplet else None,
            "region": {"slug": rip.region, "name": rip.region},
            "locked": False,
        }

    def _list_reserved_ips(self, *_: object) -> Reply:
        with self._lock:
            listed = [self._reserved_ip_json(r) for r in self.reserved_ips.values()]
        return Reply(200, {"reserved_ips": listed, "links": {}, "meta": {"total": len(listed)}})

    def _get_reserved_ip(self, match: re.Match[str], *_: object) -> Reply:
        with self._lock:
            rip = self.reserved_ips.get(match[1])
            return (
                Reply(200, {"reserved_ip": self._reserved_ip_json(rip)})
                if rip
                else Reply(404, NOT_FOUND)
            )

    def _post_action(self, match: re.Match[str], req: Request, errored: bool) -> Reply:
        try:
            request = json.loads(req.body or b"{}")
        except ValueError:
            return Reply(400, {"id": "bad_request", "message": "body is not JSON"})
        with self._lock:
            rip = self.reserved_ips.get(match[1])
            if rip is None:
                return Reply(404, NOT_FOUND)
            kind = request.get("type")
            droplet_id = request.get("droplet_id") if kind == "assign" else None
            if kind not in ("assign", "unassign") or (
                kind == "assign" and droplet_id not in self.droplets
            ):
                message = "type must be assign (with an existing droplet_id) or unassign"
                return Reply(422, {"id": "unprocessable_entity", "message": message})
            if any(a.ip == rip.ip and a.status == "in-progress" for a in self.actions.values()):
                return Reply(422, PENDING_EVENT)
            action = Action(
                self._new_id(), f"{kind}_ip", rip.ip, droplet_id, "in-progress", time.time()
            )
            action.region = self.region
            self.actions[action.id] = action
            latency = self.action_latency
        if latency <= 0:
            self._complete(action.id, errored)
        else:
            timer = threading.Timer(latency, self._complete, (action.id, errored))
            timer.daemon = True
            with self._lock:
                self._timers = [t for t in self._timers if t.is_alive()] + [timer]
            timer.start()
        with self._lock:
            return Reply(201, {"action": action.to_api()})

    def _complete(self, action_id: int, errored: bool) -> None:
        """The IP is routed (on_assign) before the action reads completed, as on DigitalOcean."""
        with self._lock:
            action = self.actions[action_id]
            rip = self.reserved_ips.get(action.ip)
            droplet = self.droplets.get(action.droplet_id) if action.droplet_id else None
        if not errored and rip is not None:
            # Routed first, then visible: an agent that reads the new holder (maintenance on
            # says done) must find clients already reaching it.
            if self.on_assign:
                self.on_assign(rip, droplet)
            with self._lock:
                rip.droplet_id = droplet.id if droplet else None
        with self._lock:
            action.status = "errored" if errored else "completed"
            action.completed_at = time.time()

    def _get_ip_action(self, match: re.Match[str], *_: object) -> Reply:
        with self._lock:
            action = self.actions.get(int(match[2]))
            if action is None or action.ip != match[1]:
                return Reply(404, NOT_FOUND)
            return Reply(200, {"action": action.to_api()})

    def _get_action(self, match: re.Match[str], *_: object) -> Reply:
        with self._lock:
            action = self.actions.get(int(match[1]))
            return Reply(200, {"action": action.to_api()}) if action else Reply(404, NOT_FOUND)

    # -- /_lab/: the controller's door --

    def _admin(self, request: Request) -> Reply:
        try:
            payload = json.loads(request.body) if request.body else {}
            for route_method, pattern, handler in ADMIN_ROUTES:
                match = re.fullmatch(pattern, request.path)
                if match and route_method == request.method:
                    return handler(self, match, payload)
        except (ValueError, KeyError, TypeError) as exc:
            return Reply(400, {"id": "bad_request", "message": f"{exc.__class__.__name__}: {exc}"})
        message = f"no lab route {request.method} {request.path}"
        return Reply(404, {"id": "not_found", "message": message})


def _admin_add_droplet(emu: Emulator, _: re.Match[str], r: dict[str, Any]) -> Reply:
    droplet = emu.add_droplet(
        r["name"], r["private_ip"], r["public_ip"], r.get("tags"), r.get("id")
    )
    return Reply(201, asdict(droplet))


def _admin_replace(emu: Emulator, m: re.Match[str], r: dict[str, Any]) -> Reply:
    return Reply(201, asdict(emu.replace_droplet(int(m[1]), r["private_ip"], r.get("public_ip"))))


def _admin_remove(emu: Emulator, m: re.Match[str], _: dict[str, Any]) -> Reply:
    emu.remove_droplet(int(m[1]))
    return Reply(204)


def _admin_add_fault(emu: Emulator, _: re.Match[str], r: dict[str, Any]) -> Reply:
    return Reply(201, emu.add_fault(Fault.from_json(r)).to_json())


def _admin_clear_faults(emu: Emulator, *_: Any) -> Reply:
    emu.clear_faults()
    return Reply(204)


def _admin_token(emu: Emulator, _: re.Match[str], r: dict[str, Any]) -> Reply:
    emu.set_token(str(r["token"]))
    return Reply(204)


def _admin_latency(emu: Emulator, _: re.Match[str], r: dict[str, Any]) -> Reply:
    emu.action_latency = float(r["seconds"])
    return Reply(204)


def _admin_add_ip(emu: Emulator, _: re.Match[str], r: dict[str, Any]) -> Reply:
    return Reply(201, asdict(emu.add_reserved_ip(r["ip"], r.get("droplet_id"))))


def _admin_assign(emu: Emulator, m: re.Match[str], r: dict[str, Any]) -> Reply:
    emu.assign_now(m[1], r.get("droplet_id"))
    return Reply(204)


def _admin_source(emu: Emulator, _: re.Match[str], r: dict[str, Any]) -> Reply:
    emu.bind_source(r["address"], int(r["droplet_id"]))
    return Reply(204)


def _admin_calls(emu: Emulator, *_: Any) -> Reply:
    return Reply(200, [asdict(c) for c in emu.calls()])


def _admin_state(emu: Emulator, *_: Any) -> Reply:
    return Reply(200, emu.snapshot())


AdminHandler = Callable[[Emulator, re.Match[str], dict[str, Any]], Reply]

ADMIN_ROUTES: list[tuple[str, str, AdminHandler]] = [
    ("GET", r"/_lab/state", _admin_state),
    ("GET", r"/_lab/calls", _admin_calls),
    ("POST", r"/_lab/droplets", _admin_add_droplet),
    ("POST", r"/_lab/droplets/(\d+)/replace", _admin_replace),
    ("DELETE", r"/_lab/droplets/(\d+)", _admin_remove),
    ("POST", r"/_lab/faults", _admin_add_fault),
    ("DELETE", r"/_lab/faults", _admin_clear_faults),
    ("PUT", r"/_lab/token", _admin_token),
    ("PUT", r"/_lab/action_latency", _admin_latency),
    ("POST", r"/_lab/reserved_ips", _admin_add_ip),
    ("PUT", r"/_lab/reserved_ips/([^/]+)", _admin_assign),
    ("POST", r"/_lab/sources", _admin_source),
]


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "ha-web-lab-emulator"

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request.parse(
            self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
        )
        reply = self.server.emulator.handle(request)
        if isinstance(reply.body, bytes):
            payload = reply.body
        elif isinstance(reply.body, str):
            payload = reply.body.encode()
        else:
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        fault = reply.fault
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            if fault is None or fault.kind != "flood":
                self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if fault is None:
                self.wfile.write(payload)
            else:
                self._stream(fault, payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a hang fault outlived its timeout)

    def _stream(self, fault: Fault, payload: bytes) -> None:
        """A drip's payload byte by byte, or a flood's `size` spaces (HTTP/1.0: ends at close)."""
        emulator = self.server.emulator
        if fault.kind == "drip":
            for byte in payload:
                if emulator.idle(fault.seconds):
                    return
                self.wfile.write(bytes([byte]))
                fault.sent += 1
            return
        block = b" " * 65536
        while fault.sent < fault.size and not emulator.idle(0):
            chunk = block[: fault.size - fault.sent]
            self.wfile.write(chunk)
            fault.sent += len(chunk)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """The emulator keeps its own call log; the default one would print request lines."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], emulator: Emulator, tls: ssl.SSLContext | None = None
    ) -> None:
        self.emulator = emulator
        self.tls = tls
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs here, in the request's own thread: a slow or broken client
        # never holds up the accept loop, and a failed handshake ends only its request.
        request.settimeout(TLS_HANDSHAKE_TIMEOUT)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with wrapped:
            super().finish_request(wrapped, client_address)


class EmulatorServer:
    """The emulator on one address, served from a background thread; https with `tls`."""

    def __init__(
        self,
        emulator: Emulator,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.emulator = emulator
        self._server = _Server((host, port), emulator, tls)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="emulator",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        scheme = "https" if self._server.tls else "http"
        return f"{scheme}://{host!s}:{port}"

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.emulator.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# Command line (the lab)
# ---------------------------------------------------------------------------


def load_state(emulator: Emulator, path: Path) -> None:
    """{"droplets": [{id?, name, private_ip, public_ip, tags}], "reserved_ips": [{ip, droplet_id?}],
    "sources": {address: droplet_id}, "action_latency": seconds}"""
    raw = json.loads(path.read_text())
    for d in raw.get("droplets", []):
        emulator.add_droplet(d["name"], d["private_ip"], d["public_ip"], d.get("tags"), d.get("id"))
    for r in raw.get("reserved_ips", []):
        emulator.add_reserved_ip(r["ip"], r.get("droplet_id"))
    for address, droplet_id in raw.get("sources", {}).items():
        emulator.bind_source(address, int(droplet_id))
    if "action_latency" in raw:
        emulator.action_latency = float(raw["action_latency"])


def command_hook(command: str) -> AssignHook:
    """Runs COMMAND IP DROPLET_ID NAME PRIVATE_IP PUBLIC_IP (droplet fields empty on unassign)."""
    argv = shlex.split(command)

    def run(rip: ReservedIp, droplet: Droplet | None) -> None:
        fields = (
            [str(droplet.id), droplet.name, droplet.private_ip, droplet.public_ip]
            if droplet
            else [""] * 4
        )
        result = subprocess.run(
            [*argv, rip.ip, *fields], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            failure = f"on-assign hook failed ({result.returncode}): {result.stderr.strip()}"
            print(f"lab.emulator: {failure}", file=sys.stderr)

    return run


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not ADDRESS:PORT")
    return host, int(port)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lab.emulator", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--listen", type=_address, action="append", required=True, help="ADDRESS:PORT (repeatable)"
    )
    parser.add_argument("--state", type=Path, help="JSON file with droplets, reserved_ips, sources")
    parser.add_argument(
        "--token-file", type=Path, required=True, help="file holding the accepted API token"
    )
    parser.add_argument(
        "--action-latency",
        type=float,
        help=f"seconds until an action completes ({DEFAULT_LATENCY})",
    )
    parser.add_argument(
        "--on-assign", help="command run when an assignment completes (see command_hook)"
    )
    parser.add_argument("--call-log", type=Path, help="append every call here as a JSON line")
    return parser.parse_args(argv)


def _json_lines(path: Path) -> Callable[[Call], None]:
    lock = threading.Lock()

    def write(call: Call) -> None:
        with lock, path.open("a") as handle:
            handle.write(json.dumps(asdict(call)) + "\n")

    return write


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    emulator = Emulator(token=args.token_file.read_text().strip())
    if args.state:
        load_state(emulator, args.state)
    if args.action_latency is not None:
        emulator.action_latency = args.action_latency
    if args.on_assign:
        emulator.on_assign = command_hook(args.on_assign)
    if args.call_log:
        emulator.call_sink = _json_lines(args.call_log)
    # Blocked here and so in every thread started below: only sigwait sees them, at once.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    servers = [EmulatorServer(emulator, host, port).start() for host, port in args.listen]
    for server in servers:
        print(f"lab.emulator: listening on {server.url}", flush=True)
    signal.sigwait(stop_signals)
    for server in servers:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
