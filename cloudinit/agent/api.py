"""The few DigitalOcean API calls the agent makes, each mapped to a clear outcome."""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

from .config import Config
from .errors import FatalApiError, RetryableError
from .transport import Endpoint, HttpReply, send

TOKEN_SCOPES = "reserved_ip:update, droplet:read and actions:read"
MAX_PAGES = 50
DROPLETS = "/v2/droplets"


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


class Droplet(NamedTuple):
    """The parts of a droplet the agent uses."""

    id: int
    name: str
    tags: tuple[str, ...]
    private_ip: str | None
    public_ip: str | None = None
    """Reachable without the VPC: a peer judges whether this droplet still serves through it."""

    @classmethod
    def from_api(cls, raw: Any) -> Droplet:
        """Raises ValueError when raw does not have the API's shape for a droplet."""
        droplet_id = _key(raw, "id")
        name = raw.get("name", "")
        tags = raw.get("tags") or []
        networks = raw.get("networks") or {}
        v4 = _key(networks, "v4", []) or []
        if not isinstance(droplet_id, int) or isinstance(droplet_id, bool):
            raise ValueError("a droplet's id is not a number")
        if not isinstance(name, str) or not _all(tags, str):
            raise ValueError(f"droplet {droplet_id}'s name or tags are not strings")
        if not _all(v4, dict):
            raise ValueError(f"droplet {droplet_id}'s networks.v4 is not a list of objects")
        private, public = (_address(droplet_id, v4, kind) for kind in ("private", "public"))
        return cls(droplet_id, name, tuple(tags), private, public)


def _address(droplet_id: int, v4: list[dict[str, Any]], kind: str) -> str | None:
    """The first IPv4 address of a kind ("private", "public") in a droplet's networks.v4."""
    found = [n.get("ip_address") for n in v4 if n.get("type") == kind]
    if not found or not found[0]:
        return None
    # The agent puts it in URLs (health, role): "1.2.3.4@elsewhere" must not name a host.
    try:
        if not isinstance(found[0], str):
            raise ValueError(found[0])
        return str(ipaddress.IPv4Address(found[0]))
    except ValueError:
        raise ValueError(
            f"droplet {droplet_id}'s {kind} ip_address is not an IPv4 address"
        ) from None


class Action(NamedTuple):
    id: int
    status: str


def _key(value: Any, key: str, default: Any = ValueError) -> Any:
    """value[key] if value is a JSON object; ValueError if it is not, or lacks a required key."""
    if not isinstance(value, dict):
        raise ValueError(f"expected an object with {key!r}, got {type(value).__name__}")
    if key not in value and default is ValueError:
        raise ValueError(f"no {key!r}")
    return value.get(key, default)


def _all(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(item, kind) for item in value)


class DigitalOcean:
    """The few API calls the agent makes, each mapped to a clear outcome.

    Every request goes to api_base_url's scheme, host and port, and nowhere else: it carries
    the token. With a deadline (time.monotonic()), every request also ends by then."""

    def __init__(self, cfg: Config, token: str, deadline: float | None = None) -> None:
        self.cfg = cfg
        self._token = token
        self._base = Endpoint.parse(cfg.api_base_url)
        self.deadline = deadline

    def until(self, deadline: float) -> DigitalOcean:
        """The same client, its requests bounded by deadline."""
        return DigitalOcean(self.cfg, self._token, deadline)

    def call(self, method: str, path: str, payload: object = None) -> Any:
        """path (with its query) is under api_base_url's path."""
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": "ha-web-agent",
        }
        body = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(payload).encode()
        target = self._base.prefix + path
        reply = send(
            method,
            self._base,
            target,
            self.cfg.request_timeout,
            headers=headers,
            body=body,
            deadline=self.deadline,
        )
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
            droplet = _key(_key(answer, "reserved_ip"), "droplet")
            return None if droplet is None else Droplet.from_api(droplet)
        except ValueError as exc:
            raise RetryableError(f"bad reserved IP answer: {exc}") from None

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
        query: str | None = urllib.parse.urlencode({"tag_name": tag, "per_page": 200})
        found: list[Droplet] = []
        for _ in range(MAX_PAGES):
            if query is None:
                return found
            answer = self.call("GET", f"{DROPLETS}?{query}")
            try:
                droplets = _key(answer, "droplets")
                if not isinstance(droplets, list):
                    raise ValueError("'droplets' is not a list")
                found += [Droplet.from_api(d) for d in droplets]
                query = self._next_query(answer, query)
            except ValueError as exc:
                raise RetryableError(f"bad droplet list answer: {exc}") from None
        raise RetryableError(f"droplet list has more than {MAX_PAGES} pages")

    def _next_query(self, answer: Any, query: str) -> str | None:
        """The query of the next page of the droplet list, or None on the last page.

        `links.pages.next` is resolved against the page it came with, and followed only to
        the same list on api_base_url's scheme, host and port: the request carries the token."""
        link = _key(_key(_key(answer, "links", {}) or {}, "pages", {}) or {}, "next", None)
        if not isinstance(link, str | None):
            raise ValueError("links.pages.next is not a string")
        if not link:
            return None
        base = self._base
        page = urllib.parse.urlunsplit(
            (base.scheme, base.netloc, base.prefix + DROPLETS, query, "")
        )
        try:
            url = urllib.parse.urlsplit(urllib.parse.urljoin(page, link))
            there = Endpoint.parse(url.geturl())
        except ValueError:
            there = None
        if there is None or there.origin != base.origin or url.path != base.prefix + DROPLETS:
            raise RetryableError(
                f"not following the droplet list's next page link {link[:200]!r}: it leaves "
                f"{base}{base.prefix}{DROPLETS}, and the request would carry the token"
            )
        return url.query


def _action(answer: Any) -> Action:
    try:
        action = _key(answer, "action")
        action_id, status = _key(action, "id"), _key(action, "status")
        if not isinstance(action_id, int) or isinstance(action_id, bool):
            raise ValueError("action.id is not a number")
        if not isinstance(status, str):
            raise ValueError("action.status is not a string")
    except ValueError as exc:
        raise RetryableError(f"bad action answer: {exc}") from None
    return Action(action_id, status)
