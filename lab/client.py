"""The lab's client: polls the reserved IP from its own namespace and records who answered.

Each poll is a new TCP connection (no keep-alive), so every request follows the reserved
IP's current route, as a new visitor's would. nginx names the node in `X-HA-Web-Node`.
Requests start every 50 ms whether or not earlier ones have answered, as visitors arrive:
a request that hangs on a dead node (up to its timeout) does not hold back the next one,
so the first good answer after a failover is seen within one tick of the route changing.
"""

from __future__ import annotations

import http.client
import itertools
import queue
import threading
import time
from dataclasses import dataclass

from lab import netns

NODE_HEADER = "X-HA-Web-Node"
WORKERS = 16
"""Requests in flight at most: more than a timeout's worth of ticks (0.5 s / 50 ms)."""


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
        self._samples: list[Sample] = []
        self._in_flight: dict[int, float] = {}
        self._lock = threading.Condition()
        self._ticks: queue.Queue[int | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"client-{n}", daemon=True)
            for n in range(WORKERS)
        ]
        self._ready = threading.Barrier(WORKERS + 1)

    def start(self) -> Poller:
        for thread in self._threads:
            thread.start()
        try:
            self._ready.wait(5)
        except threading.BrokenBarrierError:
            self.stop()
            raise netns.NetnsError(
                f"the client's threads could not enter namespace {self.namespace}; run as root, "
                "and check that the lab's namespaces exist (ip netns list)"
            ) from None
        ticker = threading.Thread(target=self._tick, name="client-ticks", daemon=True)
        self._threads.append(ticker)
        ticker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for _ in range(WORKERS):
            self._ticks.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def _tick(self) -> None:
        next_at = time.monotonic()
        for tick in itertools.count():
            if self._stop.is_set():
                return
            self._ticks.put(tick)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _work(self) -> None:
        # setns moves only this thread: every worker enters the client's namespace itself.
        try:
            netns.enter(self.namespace)
            self._ready.wait(5)
        except (netns.NetnsError, OSError, threading.BrokenBarrierError):
            self._ready.abort()
            return
        while (tick := self._ticks.get()) is not None:
            started = time.time()
            with self._lock:
                self._in_flight[tick] = started
            node, error = poll_once(self.address, self.timeout)
            with self._lock:
                del self._in_flight[tick]
                self._samples.append(Sample(started, node, error))
                self._lock.notify_all()

    def _sorted(self) -> list[Sample]:
        with self._lock:
            return sorted(self._samples, key=lambda s: s.time)

    def since(self, start: float, end: float | None = None) -> list[Sample]:
        """Answered requests that started in [start, end), in start order."""
        return [s for s in self._sorted() if s.time >= start and (end is None or s.time < end)]

    def last(self, count: int) -> list[Sample]:
        # Answers arrive out of start order by at most the requests in flight.
        with self._lock:
            tail = self._samples[-(count + WORKERS) :]
        return sorted(tail, key=lambda s: s.time)[-count:]

    def pending_before(self, start: float) -> bool:
        """A request that started before `start` has no answer yet."""
        with self._lock:
            return any(t < start for t in self._in_flight.values())

    def settle(self, end: float) -> None:
        """Wait until every request that started before `end` has its answer (or timed out)."""
        deadline = time.monotonic() + self.timeout + 2.0
        with self._lock:
            while any(t < end for t in self._in_flight.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._lock.wait(left)
