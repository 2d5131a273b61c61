"""HTTP exchanges with the API, the metadata service and the members' health URLs."""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, cast

from .errors import AgentError, RetryableError
from .log import LOG

# The biggest answer the agent asks for is its cluster's droplet list: a few KB per droplet
# (DigitalOcean's droplet object, with image, size and networks) for at most 10 nodes, so
# 1 MiB holds that many times over. A bigger body is no answer of the API's, and
# reading it whole could push a 1 GB droplet towards the OOM killer, which may pick nginx or
# keepalived as readily as the agent.
MAX_BODY = 1 << 20
_CHUNK = 64 * 1024


class HttpReply(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except (ValueError, RecursionError):
            return None


class Endpoint(NamedTuple):
    """Where a request goes: scheme, host and port, parsed from a URL (plus its path prefix)."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Raises ValueError for a URL that names no http(s) host and port."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"


def http_request(
    method: str,
    url: str,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> HttpReply:
    """One exchange with a URL from the settings (metadata, health); see send."""
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        endpoint = Endpoint.parse(url)
    except ValueError:
        raise RetryableError(f"{method} {target}: not an http(s) URL with a valid port") from None
    return send(method, endpoint, target, timeout, headers=headers, body=body)


def send(
    method: str,
    endpoint: Endpoint,
    target: str,
    timeout: float,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    deadline: float | None = None,
) -> HttpReply:
    """One HTTP exchange with endpoint, logged as method, target, status and duration (never
    headers). It ends within timeout seconds, and by deadline (time.monotonic()) if given,
    however slowly the other side answers.

    http.client rather than urllib.request: it follows no redirect (one would carry the bearer
    token elsewhere), uses no proxy (the metadata service and the lab must be reached
    directly), and leaves out urllib.request's imports, about 5 ms of every notify's start."""
    started = time.monotonic()
    end = started + timeout if deadline is None else min(started + timeout, deadline)
    try:
        reply = _exchange(method, endpoint, target, end, headers=headers or {}, body=body)
    except RetryableError as exc:
        LOG.warning("%s %s -> %s after %.3fs", method, target, exc, time.monotonic() - started)
        raise
    LOG.info("%s %s -> %d in %.3fs", method, target, reply.status, time.monotonic() - started)
    return reply


def _exchange(
    method: str,
    endpoint: Endpoint,
    target: str,
    end: float,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
) -> HttpReply:
    left = end - time.monotonic()
    if left <= 0:
        raise RetryableError("no time left to ask")
    kind = http.client.HTTPSConnection if endpoint.scheme == "https" else http.client.HTTPConnection
    connection = kind(endpoint.host, endpoint.port, timeout=left)
    try:
        # The TCP connect and the TLS handshake may each take up to `left`; from then on,
        # every send and receive gets only what is left of it.
        connection.connect()
        sock = connection.sock
        sock.settimeout(_left(end))
        try:
            connection.request(method, target, body=body, headers=dict(headers))
        except ValueError:
            # Never the exception's text: http.client quotes the bad header, the token with it.
            raise AgentError(
                f"{method} {target} not sent: a request header holds a character HTTP does not "
                "allow (the header is not shown: it may be the token). Check the token file"
            ) from None
        # Read through a file that bounds every receive by the time left: the socket's own
        # timeout restarts with each byte, so a server dripping bytes could hold us forever.
        reader = _DeadlineSocket(sock, end)
        response = http.client.HTTPResponse(cast(socket.socket, reader), method=method)
        response.begin()
        return HttpReply(response.status, _lower(response.getheaders()), _read_body(response))
    except TimeoutError:
        raise RetryableError("timed out") from None
    except (OSError, http.client.HTTPException) as exc:
        raise RetryableError(f"connection failed ({exc.__class__.__name__}: {exc})") from None
    finally:
        connection.close()


def _read_body(response: http.client.HTTPResponse) -> bytes:
    """The body, refused without reading the rest once it is bigger than MAX_BODY."""
    if response.length is not None and response.length > MAX_BODY:
        raise RetryableError(f"answer of {response.length} bytes, more than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(_CHUNK):
        size += len(chunk)
        if size > MAX_BODY:
            raise RetryableError(f"answer of more than {MAX_BODY} bytes; not reading the rest")
        chunks.append(chunk)
    return b"".join(chunks)


def _left(end: float) -> float:
    left = end - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


class _DeadlineSocket:
    """What HTTPResponse reads from: the connection's socket, each receive given only the time
    left before end, so the status line, headers and body together end by then."""

    def __init__(self, sock: socket.socket, end: float) -> None:
        self._sock = sock
        self._end = end

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._end))


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, end: float) -> None:
        super().__init__()
        self._sock = sock
        self._end = end

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(_left(self._end))
        return self._sock.recv_into(buffer)


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}
