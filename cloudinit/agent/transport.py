"""HTTP exchanges with the API, the metadata service and the members' health URLs."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .errors import RetryableError
from .log import LOG


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
