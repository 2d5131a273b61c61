"""The few DigitalOcean API calls the agent makes, each mapped to a clear outcome."""

from __future__ import annotations

import contextlib
import email.utils
import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

from .config import Config
from .errors import FatalApiError, RetryableError
from .transport import HttpReply, http_request

TOKEN_SCOPES = "reserved_ip:update, droplet:read and actions:read"
MAX_PAGES = 50


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
