"""The dev stack deploys into the lab as the program renders it, and the primary serves."""

from __future__ import annotations

import time

import pytest
import yaml

from lab.cluster import Lab
from lab.droplet import BOOTED
from lab.journal_lines import AGENT_STATE, runs_ended
from lab.spec import decode
from tests.lab_fixtures import dev_lab

pytestmark = pytest.mark.lab
__all__ = ["dev_lab"]


def test_primary_serves_through_the_reserved_ip(dev_lab: Lab) -> None:
    assert dev_lab.holder() == dev_lab.spec.primary
    since = time.time()
    dev_lab.wait_for(lambda: len(dev_lab.samples(since)) >= 20, 10, "20 polls")
    dev_lab.client.settle(time.time())
    assert {s.node for s in dev_lab.samples(since)} == {dev_lab.spec.primary}


def test_write_files_land_unmodified_at_their_paths(dev_lab: Lab) -> None:
    droplet = dev_lab.droplets[dev_lab.spec.primary]
    document = yaml.safe_load(droplet.spec.user_data)
    for entry in document["write_files"]:
        if entry["path"] == "/etc/keepalived/ha-web-peers.conf":
            continue  # the agent rewrites it with the peers, as designed
        landed = droplet.path(entry["path"]).read_bytes()
        assert landed == decode(entry["content"], entry.get("encoding", "text/plain"))
        mode = droplet.path(entry["path"]).stat().st_mode & 0o7777
        assert mode == int(entry["permissions"], 8), entry["path"]


def test_each_droplet_boots_real_systemd_and_cloud_init_without_an_error(dev_lab: Lab) -> None:
    for droplet in dev_lab.droplets.values():
        said = [line.text for line in droplet.boot_lines]
        assert said[-1] == BOOTED, said  # no cloud-init error in any stage
        init = droplet.run(["readlink", "/proc/1/exe"]).stdout.strip()
        assert init == "/usr/lib/systemd/systemd", init
        status = droplet.run(["cloud-init", "status", "--long"]).stdout
        assert "status: done" in status, status
        failed = droplet.systemctl("list-units", "--failed", "--plain", "--no-legend").stdout
        assert failed.strip() == "", failed


def test_keepalived_is_built_at_boot_from_the_pinned_tarball_the_lab_serves(dev_lab: Lab) -> None:
    downloads = dev_lab.emulator.calls("GET", "/software/keepalived-2.3.4.tar.gz")
    sources = sorted(c.source for c in downloads if c.status == 200)
    assert sources == sorted(d.spec.public_ip for d in dev_lab.droplets.values())
    droplet = dev_lab.droplets[dev_lab.spec.primary]
    version = droplet.run(["/usr/sbin/keepalived", "--version"])
    assert "Keepalived v2.3.4" in version.stdout + version.stderr
    package = droplet.run(["dpkg-query", "-W", "-f", "${Status}", "keepalived"])
    assert "install ok installed" not in package.stdout, "the droplet built it, not apt"


def test_boot_says_what_differs_from_a_droplet(dev_lab: Lab) -> None:
    said = "\n".join(line.text for line in dev_lab.droplets[dev_lab.spec.primary].boot_lines)
    for difference in ("Debian bookworm under systemd-nspawn", "a droplet runs Ubuntu 24.04",
                       "NoCloud seed", "the image's local repository", "the kernel is the host's",
                       "the emulator serves Debian's orig tarball", "no machinectl"):  # fmt: skip
        assert difference in said, said


def test_agent_runs_from_its_units_and_timers(dev_lab: Lab) -> None:
    droplet = dev_lab.droplets[dev_lab.spec.primary]
    since = time.time()

    def ended(unit: str) -> bool:
        return runs_ended(droplet.journal(), unit, since) != []

    dev_lab.wait_for(lambda: ended("ha-web-reconcile.service"), 15, "a reconcile run by its timer")
    dev_lab.wait_for(lambda: ended("ha-web-peers.service"), 15, "a peers run by its timer")
    assert any(AGENT_STATE.match(line) for line in droplet.journal().splitlines())
