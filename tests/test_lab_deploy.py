"""The dev stack deploys into the lab as the program renders it, and the primary serves."""

from __future__ import annotations

import hashlib
import time

import pytest
import yaml

from lab.cloud_config import decode
from lab.cluster import Lab
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


def test_keepalived_is_the_project_build_of_the_pinned_release(dev_lab: Lab) -> None:
    droplet = dev_lab.droplets[dev_lab.spec.primary]
    build = dev_lab.builds[0].root / "usr/sbin/keepalived"
    inside = droplet.path("/usr/sbin/keepalived")
    assert (
        hashlib.sha256(inside.read_bytes()).digest() == hashlib.sha256(build.read_bytes()).digest()
    )
    version = droplet.run(["keepalived", "--version"])
    assert "Keepalived v2.3.4" in version.stdout + version.stderr


def test_boot_says_what_the_lab_replaced(dev_lab: Lab) -> None:
    said = "\n".join(line.text for line in dev_lab.droplets[dev_lab.spec.primary].boot_lines)
    for replaced in ("apt is replaced", "build-keepalived: download", "systemd is replaced",
                     "journald is replaced", "cloud-init-per"):  # fmt: skip
        assert replaced in said


def test_agent_runs_from_its_units_and_timers(dev_lab: Lab) -> None:
    droplet = dev_lab.droplets[dev_lab.spec.primary]
    reconciled = "ha-web-reconcile.service: activating -> inactive (success)"
    dev_lab.wait_for(lambda: reconciled in droplet.journal(), 15, "a reconcile run by its timer")
    journal = droplet.journal()
    assert "ha-web-peers.service: activating -> inactive (success)" in journal
    assert "keepalived says MASTER" in journal
