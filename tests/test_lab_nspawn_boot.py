"""A lab droplet booted for real: the cached Debian root filesystem under systemd-nspawn,
real systemd and journald, and real cloud-init running the dev stack's user-data, unmodified,
from a NoCloud seed. The droplet joins a network namespace of the lab's topology, and
there is no route out of the lab.

The emulator, in the router namespace, serves only keepalived's tarball, from its downloads
host over https with the lab's CA (which the droplet's trust store holds), at the
keepalivedUrl the lab renders: the product's build script downloads, verifies and builds
it during the boot. Nothing answers the API and metadata addresses.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import netns
from lab.downloads import DOWNLOADS_IP, serve_downloads, serve_keepalived_tarballs
from lab.droplet import DropletSpec
from lab.emulator import Emulator
from lab.lab_ca import make_ca
from lab.nspawn import CloudInitResult, Machine, Seed, machine_dirs
from lab.rootfs import ensure_rootfs
from lab.spec import LAB_TOKEN, decode, from_stack
from lab.state import LAB_ROOT, PREFIX_START
from lab.topology import DropletLinks, Topology

pytestmark = pytest.mark.lab

BOOT_BOUND = 300.0
"""Seconds a cached boot may take until cloud-init is done (25 to 29 s here, of which about
24 s is keepalived's build on 2 cores; the bound allows a loaded machine)."""
USER_UNITS = ("ha-web-firewall.service", "nginx.service")


@dataclass
class Booted:
    machine: Machine
    spec: DropletSpec
    emulator: Emulator
    cloud_init: CloudInitResult
    cloud_init_done: float
    """Seconds from launch until `cloud-init status --wait` returned."""

    @property
    def document(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.spec.user_data))


@pytest.fixture(scope="module")
def rootfs() -> Path:
    return ensure_rootfs(echo=print)


@contextmanager
def droplet_machine(
    rootfs: Path, settings: dict[str, Any] | None = None
) -> Iterator[tuple[Machine, DropletSpec, Emulator]]:
    """The dev stack's first droplet, booting in a fresh topology, its keepalived tarball
    served by the emulator; all removed afterwards."""
    spec = from_stack("dev", settings).droplets[0]
    prefix = PREFIX_START + secrets.token_hex(2)
    topology = Topology(prefix)
    name = f"{prefix}-d0"
    emulator = Emulator(LAB_TOKEN)
    server = None
    try:
        topology.create()
        ca = make_ca(LAB_ROOT / prefix / "ca", DOWNLOADS_IP)
        print(*serve_keepalived_tarballs(emulator, [spec.user_data]), sep="\n")
        server = serve_downloads(topology.router, emulator, ca.server_context())
        topology.add_droplet(DropletLinks(name, "d0", spec.public_ip, spec.private_ip))
        seed = Seed(spec.name, str(spec.droplet_id), spec.user_data)
        files = ca.trust_files(rootfs)
        with Machine(name, rootfs, LAB_ROOT / prefix / "d0", name, seed, files=files) as machine:
            yield machine, spec, emulator
    finally:
        if server is not None:
            server.stop()
        topology.destroy()
        shutil.rmtree(LAB_ROOT / prefix, ignore_errors=True)
    assert _left_behind(prefix, name) == []


def _left_behind(prefix: str, machine: str) -> list[str]:
    """What this droplet could leave. Only its own: other labs may run at the same time."""
    found = [f"network namespace {n}" for n in netns.existing() if n.startswith(prefix)]
    found += [str(d) for d in (LAB_ROOT / prefix,) if d.exists()]
    found += sorted(machine_dirs(machine))
    marker = f"{LAB_ROOT / prefix}/"
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and marker in Path(f"/proc/{entry}/mountinfo").read_text():
                found.append(f"process {entry} with a mount of the droplet's disk")
    return found


@pytest.fixture(scope="module")
def booted(rootfs: Path) -> Iterator[Booted]:
    with droplet_machine(rootfs) as (machine, spec, emulator):
        result = machine.wait_cloud_init(BOOT_BOUND)
        done = time.monotonic() - machine.started_at
        print(
            f"cached boot: multi-user.target after "
            f"{machine.unit_entered('multi-user.target'):.1f} s, cloud-init done after {done:.1f} s"
        )
        yield Booted(machine, spec, emulator, result, done)


def test_systemd_is_the_droplets_init(booted: Booted) -> None:
    machine = booted.machine
    assert machine.run(["readlink", "/proc/1/exe"]).stdout.strip() == "/usr/lib/systemd/systemd"
    assert machine.run(["hostname"]).stdout.strip() == booted.spec.name
    # A pure cgroup v2 tree, as on Ubuntu 24.04, though this host's cgroups are hybrid.
    assert machine.run(["stat", "-fc", "%T", "/sys/fs/cgroup"]).stdout.strip() == "cgroup2fs"


def test_cloud_init_ran_every_stage_without_an_error(booted: Booted) -> None:
    result = booted.cloud_init
    assert result.status == "done", result.output[-3000:]
    assert all(not errors for errors in result.errors.values()), result.errors
    assert set(result.errors) >= {"init-local", "init", "modules-config", "modules-final"}
    assert "0 upgraded, 0 newly installed" in result.output, "packages reached the network"


def test_write_files_landed_with_their_content_modes_and_owners(booted: Booted) -> None:
    root = Path(f"/proc/{booted.machine.init_pid}/root")
    users, groups = _ids(root / "etc/passwd"), _ids(root / "etc/group")
    for entry in booted.document["write_files"]:
        path = root / str(entry["path"]).lstrip("/")
        info = path.stat()
        user, _, group = str(entry.get("owner", "root:root")).partition(":")
        assert stat.S_IMODE(info.st_mode) == int(str(entry.get("permissions", "0644")), 8), path
        assert (info.st_uid, info.st_gid) == (users[user], groups[group or user]), path
        assert path.read_bytes() == decode(
            str(entry.get("content", "")), entry.get("encoding", "text/plain")
        ), path


def _ids(table: Path) -> dict[str, int]:
    """name -> id from the droplet's own passwd or group, not the host's name service."""
    rows = (line.split(":") for line in table.read_text().splitlines())
    return {row[0]: int(row[2]) for row in rows if len(row) > 2}


def test_the_user_data_users_exist_as_system_users_without_a_shell(booted: Booted) -> None:
    for user in booted.document["users"]:
        if user == "default":
            continue
        entry = booted.machine.run(["getent", "passwd", user["name"]]).stdout.strip().split(":")
        assert int(entry[2]) < 1000, entry
        assert entry[6] == "/usr/sbin/nologin", entry
        assert booted.machine.run(["test", "-e", entry[5]], check=False).returncode != 0


def test_the_units_run_under_real_systemd(booted: Booted) -> None:
    machine = booted.machine
    states = machine.run(["systemctl", "is-active", *USER_UNITS], check=False).stdout.split()
    assert states == ["active"] * len(USER_UNITS), machine.journal("-u", "ha-web-firewall")
    assert "table inet ha_web" in machine.run(["nft", "list", "tables"]).stdout
    page = machine.run(["curl", "-sS", "--max-time", "5", f"http://{booted.spec.public_ip}/"])
    assert booted.spec.name in page.stdout
    # nginx's ha-web drop-in: systemd ran its ExecStartPost after the start.
    assert machine.read("/run/ha-web-root/nginx-down").strip() == "0"


def test_a_hardened_agent_unit_runs_as_its_user_and_logs_to_the_journal(booted: Booted) -> None:
    machine = booted.machine
    machine.run(["systemctl", "start", "ha-web-peers.service"], check=False, timeout=60)
    # journald may write the run's lines after systemctl has returned.
    deadline = time.monotonic() + 10
    while "ha-web-agent[" not in (journal := machine.journal("-u", "ha-web-peers.service")):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    # ProtectSystem=strict and PrivateTmp need namespaces inside the container: no 226/NAMESPACE.
    assert "ha-web-agent[" in journal, journal
    assert "status=226" not in journal, journal


def test_the_journal_holds_the_boot(booted: Booted) -> None:
    machine = booted.machine
    boots = machine.run(["journalctl", "--list-boots", "--no-pager"]).stdout.splitlines()
    assert len(boots) == 2, boots  # the header and this one boot
    journal = machine.journal()
    assert "Reached target multi-user.target" in journal
    assert "Cloud-init v. 22.4.2 finished" in journal
    assert "Started nginx.service" in journal


def test_keepalived_is_built_from_the_tarball_the_emulator_served_and_runs(
    booted: Booted,
) -> None:
    machine = booted.machine
    build = next(c for c in booted.document["runcmd"] if c[0].endswith("build-keepalived"))
    url, version = build[1], build[3]
    downloads = [c for c in booted.emulator.calls("GET") if url.endswith(c.path)]
    # curl fetched it once, from the droplet's own address, and got it.
    assert [(c.source, c.status) for c in downloads] == [(booted.spec.public_ip, 200)]
    said = machine.run(["/usr/sbin/keepalived", "--version"]).stderr
    assert f"Keepalived v{version}" in said, said
    state = machine.run(["systemctl", "is-active", "keepalived.service"], check=False)
    assert state.stdout.strip() == "active", machine.journal("-u", "keepalived.service")
    # The build's `make install`, not the package the image's repository also holds.
    assert machine.run(["dpkg-query", "-W", "keepalived"], check=False).returncode != 0


def test_a_clean_poweroff_stops_the_droplet(rootfs: Path) -> None:
    with droplet_machine(rootfs) as (machine, _, _):
        machine.wait_started(BOOT_BOUND)
        assert machine.poweroff() == 0
        assert not machine.running


def test_a_crash_kills_every_process_of_the_droplet(rootfs: Path) -> None:
    with droplet_machine(rootfs) as (machine, _, _):
        machine.wait_started(BOOT_BOUND)
        namespace = os.readlink(f"/proc/{machine.init_pid}/ns/pid")
        inside = _processes_in(namespace)
        assert len(inside) > 3, inside  # systemd, journald, nginx's master and workers...
        machine.crash()
        assert not machine.running
        assert _processes_in(namespace) == []


def _processes_in(namespace: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_a_packaged_keepalived_installs_offline_from_the_image_repository(rootfs: Path) -> None:
    package = {
        "keepalivedSource": "package",
        "vrrpVersion": 2,
        "healthInterval": 1,
        "advertInterval": 1,
    }
    with droplet_machine(rootfs, package) as (machine, _, _):
        result = machine.wait_cloud_init(BOOT_BOUND)
        assert (result.status, result.errors) == (
            "done",
            {
                s: []
                for s in ("init-local", "init", "modules-init", "modules-config", "modules-final")
            },
        ), result.output[-3000:]
        assert "Setting up keepalived" in result.output
        assert machine.run(["systemctl", "is-active", "keepalived.service"]).stdout.strip() == (
            "active"
        )
