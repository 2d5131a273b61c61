"""A running lab: networks, the emulated DigitalOcean, the droplets and the client.

`Lab` is a context manager. However it ends (return, exception, SIGTERM, atexit), it
ends every process it started and removes every namespace and directory it made,
and only those; a state file lets `python -m lab down` do the same from another shell.

Droplets boot the cached Debian image under systemd-nspawn (lab/droplet.py), with real
systemd and cloud-init; the emulator serves the API and metadata over http, and
keepalived's tarball over https from its downloads host, with a CA made for this lab.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from lab.client import Poller, Sample
from lab.downloads import DOWNLOADS_IP, serve_downloads, serve_in, serve_keepalived_tarballs
from lab.droplet import Droplet, DropletSpec
from lab.emulator import Call, Emulator, EmulatorServer, ReservedIp
from lab.emulator import Droplet as ApiDroplet
from lab.lab_ca import LabCa, make_ca
from lab.rootfs import ensure_rootfs
from lab.spec import LabSpec
from lab.state import LAB_ROOT, PREFIX_START, LabState, me, start_time
from lab.topology import Topology

Echo = Callable[[str], None]


class LabError(RuntimeError):
    """The lab did not reach the state it waited for; the message says what it saw."""


@dataclass(frozen=True)
class Event:
    time: float
    kind: str
    """action, route, api, boot"""
    text: str


class Lab:
    def __init__(
        self,
        spec: LabSpec,
        action_latency: float = 2.0,
        echo: Echo = print,
        root: Path = LAB_ROOT,
    ) -> None:
        self.spec = spec
        self.echo = echo
        self.prefix = PREFIX_START + secrets.token_hex(2)
        self.dir = root / self.prefix
        self.topology = Topology(self.prefix)
        self.emulator = Emulator(spec.token, action_latency, on_assign=self._on_assign)
        self.emulator.call_sink = self._on_call
        self.events: list[Event] = []
        self.droplets: dict[str, Droplet] = {}
        self.client = Poller(self.topology.client, spec.reserved_ip)
        self.state = LabState(self.prefix, str(self.dir), me())
        self.rootfs: Path | None = None
        self.ca: LabCa | None = None
        self.trust: dict[str, bytes] = {}
        self.notes: list[str] = []
        """Boot lines every real droplet says at its first boot (what the lab serves it)."""
        self._servers: list[EmulatorServer] = []
        self._closed = False
        self._replacements = 0
        self._lock = threading.Lock()

    # -- up --

    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, boot: bool = True) -> None:
        atexit.register(self.close)
        self.dir.mkdir(parents=True)
        self.state.save()
        self.rootfs = ensure_rootfs(self.echo)
        self.ca = make_ca(self.dir / "ca", DOWNLOADS_IP)
        self.trust = self.ca.trust_files(self.rootfs)
        user_data = [d.user_data for d in self.spec.droplets]
        self.notes = serve_keepalived_tarballs(self.emulator, user_data)
        self.topology.create()
        self._record()
        self._serve_emulator()
        self.emulator.add_reserved_ip(self.spec.reserved_ip)
        for index, spec in enumerate(self.spec.droplets):
            self._add_droplet(spec, f"d{index}")
        self.client.start()
        if boot:
            self.boot(list(self.droplets))

    def _serve_emulator(self) -> None:
        """The emulator in the router namespace: the API and metadata over http, and the
        droplets' downloads over https on the downloads host, with the lab's CA."""
        router = self.topology.router
        self._servers.append(serve_in(router, self.emulator))
        assert self.ca is not None, "start() makes the CA first"
        self._servers.append(serve_downloads(router, self.emulator, self.ca.server_context()))

    def _new_droplet(self, spec: DropletSpec, short: str) -> Droplet:
        assert self.rootfs is not None, "start() finds the image first"
        return Droplet(
            spec,
            short,
            lab_dir=self.dir,
            topology=self.topology,
            rootfs=self.rootfs,
            files=self.trust,
            notes=self.notes,
            echo=self.echo,
        )

    def _add_droplet(self, spec: DropletSpec, short: str) -> Droplet:
        droplet = self._new_droplet(spec, short)
        self.droplets[spec.name] = droplet
        self.emulator.add_droplet(
            spec.name, spec.private_ip, spec.public_ip, spec.tags, spec.droplet_id
        )
        droplet.create()
        self._record()
        return droplet

    def boot(self, names: Sequence[str], wait: bool = True) -> None:
        """Power on these droplets together; wait until each has finished its boot."""
        for name in names:
            self.droplets[name].boot()
            self.event("boot", f"{name} powered on")
        self._record()
        if wait:
            for name in names:
                self.droplets[name].wait_booted()
                self.event("boot", f"{name} finished booting")

    def crash(self, name: str) -> None:
        self.droplets[name].crash()
        self._record()

    def replace(self, name: str, private_ip: str, public_ip: str) -> Droplet:
        """Destroy a droplet and create one with its name and user-data but a new id and IPs."""
        old = self.droplets.pop(name)
        old.destroy()
        new = self.emulator.replace_droplet(old.spec.droplet_id, private_ip, public_ip)
        self._replacements += 1
        spec = DropletSpec(name, new.id, public_ip, private_ip, old.spec.user_data, old.spec.tags)
        droplet = self._new_droplet(spec, f"r{self._replacements}")
        self.droplets[name] = droplet
        droplet.create()
        self._record()
        self.event("action", f"{name} replaced: id {new.id}, private IP {private_ip}")
        return droplet

    def add_vpc_host(self, short: str, private_cidr: str) -> str:
        """A namespace on the VPC that is not a droplet (the security tests' intruder)."""
        namespace = self.topology.attach_to_vpc(short, private_cidr)
        self._record()
        return namespace

    def _record(self) -> None:
        self.state.namespaces = self.topology.namespaces
        self.state.inits = [
            (d.init_pid, start_time(d.init_pid) or 0)
            for d in self.droplets.values()
            if d.init_pid is not None
        ]
        self.state.save()

    # -- what happens --

    def event(self, kind: str, text: str, at: float | None = None) -> None:
        with self._lock:
            self.events.append(Event(time.time() if at is None else at, kind, text))

    def _on_assign(self, rip: ReservedIp, droplet: ApiDroplet | None) -> None:
        # Stamped when the router is told: the change applies while `nft` runs, not after.
        at = time.time()
        self.topology.route_reserved(rip.ip, droplet.public_ip if droplet else None)
        self.event("route", f"{rip.ip} now routed to {droplet.name if droplet else 'nobody'}", at)

    def _on_call(self, call: Call) -> None:
        if call.method != "GET" or call.status >= 300:
            self.event(
                "api", f"{self.name_of(call.source)} {call.method} {call.path} -> {call.status}"
            )

    def name_of(self, address: str) -> str:
        for droplet in self.droplets.values():
            if address in (droplet.spec.public_ip, droplet.spec.private_ip):
                return droplet.name
        return address

    def holder(self) -> str | None:
        droplet_id = self.emulator.holder(self.spec.reserved_ip)
        droplet = self.emulator.droplets.get(droplet_id) if droplet_id else None
        return droplet.name if droplet else None

    # -- waiting --

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        """Seconds it took until `check()`; LabError naming `what` after `timeout`."""
        started = time.monotonic()
        while not check():
            if time.monotonic() - started > timeout:
                raise LabError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.05)
        return time.monotonic() - started

    def serving(self, node: str, count: int = 6) -> bool:
        """The last `count` requests were answered by `node`, and none older is still waiting
        (one sent to a dead node before the IP moved would still fail)."""
        recent = self.client.last(count)
        return (
            len(recent) == count
            and all(s.node == node for s in recent)
            and not self.client.pending_before(recent[0].time)
        )

    def wait_serving(self, node: str, timeout: float) -> float:
        return self.wait_for(
            lambda: self.serving(node), timeout, f"{node} to answer through {self.spec.reserved_ip}"
        )

    def samples(self, start: float, end: float | None = None) -> list[Sample]:
        return self.client.since(start, end)

    # -- down --

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        steps: list[Callable[[], None]] = [self.client.stop]
        steps += [d.destroy for d in self.droplets.values()]
        steps += [server.stop for server in self._servers]
        steps += [self.topology.destroy, lambda: shutil.rmtree(self.dir, ignore_errors=True)]
        errors = []
        for step in steps:
            try:
                step()
            except Exception as error:
                errors.append(f"{error}")
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if errors:
            raise LabError("tearing the lab down hit errors: " + "; ".join(errors))
