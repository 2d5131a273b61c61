"""The lab's client: polls the reserved IP from its own namespace and records who answered.

Each poll is a new TCP connection (no keep-alive), so every request follows the reserved
IP's current route, as a new visitor's would. nginx names the node in `X-HA-Web-Node`.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass

from lab import netns

NODE_HEADER = "X-HA-Web-Node"


@dataclass(frozen=True)
class Sample:
    time: float
    """Wall-clock start of the request, the clock the emulator and journals use."""
    node: str | None
    """The node that answered 2xx, or None for a failure."""
    error: str = ""


def poll_once(address: str, timeout: float) -> tuple[str | None, str]:
    connection = http.client.HTTPConnection(address, 80, timeout=timeout)
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
        node = response.getheader(NODE_HEADER)
        if 200 <= response.status < 300 and node:
            return node, ""
        return None, f"HTTP {response.status}"
    except (OSError, http.client.HTTPException) as error:
        return None, type(error).__name__
    finally:
        connection.close()


class Poller:
    def __init__(
        self, namespace: str, address: str, interval: float = 0.05, timeout: float = 0.5
    ) -> None:
        self.namespace = namespace
        self.address = address
        self.interval = interval
        self.timeout = timeout
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="client", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        netns.enter(self.namespace)
        self._ready.set()
        next_at = time.monotonic()
        while not self._stop.is_set():
            started = time.time()
            node, error = poll_once(self.address, self.timeout)
            self.samples.append(Sample(started, node, error))
            # Fixed 50 ms ticks; a slow request skips the ticks it overran.
            next_at += self.interval
            now = time.monotonic()
            next_at = max(next_at, now)
            self._stop.wait(next_at - now)

    def since(self, start: float, end: float | None = None) -> list[Sample]:
        return [s for s in list(self.samples) if s.time >= start and (end is None or s.time < end)]

    def last(self, count: int) -> list[Sample]:
        return list(self.samples[-count:])
