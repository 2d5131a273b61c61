"""What the droplets' own firewall and files enforce, checked inside the lab's namespaces."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from lab import netns
from lab.cluster import Lab
from lab.topology import METADATA_IP
from tests.lab_fixtures import dev_lab

pytestmark = pytest.mark.lab
__all__ = ["dev_lab"]
METADATA = f"http://{METADATA_IP}/metadata/v1.json"
INTRUDER_IP = "10.77.0.99"
VRRP_PACKET = "bytes([0x31, 51, 250, 0, 0, 30, 0, 0])"


def _metadata_as(lab: Lab, user: str | None) -> subprocess.CompletedProcess[str]:
    droplet = lab.droplets[lab.spec.primary]
    curl = ["curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", METADATA]
    return droplet.run(curl, user=user)


def test_only_root_and_the_agent_user_reach_the_metadata_service(dev_lab: Lab) -> None:
    assert _metadata_as(dev_lab, None).stdout == "200"
    assert _metadata_as(dev_lab, "ha-web").stdout == "200"
    other = _metadata_as(dev_lab, "keepalived_script")
    assert other.returncode != 0 and other.stdout != "200"


def _probe(namespace: str, source: str) -> None:
    rule = f"ip protocol vrrp ip saddr {source} counter"
    netns.nft(
        namespace,
        "table inet lab_probe {\n"
        f"  chain before {{ type filter hook input priority -10; {rule}; }}\n"
        f"  chain after {{ type filter hook input priority 10; {rule}; }}\n"
        "}\n",
    )


def _counts(namespace: str) -> list[int]:
    """Packets seen before and after the ha_web input chain (priority 0)."""
    listing = netns.run(namespace, ["nft", "list", "table", "inet", "lab_probe"]).stdout
    return [int(n) for n in re.findall(r"counter packets (\d+)", listing)]


def test_vrrp_from_a_non_peer_is_dropped_by_the_host_firewall(dev_lab: Lab) -> None:
    primary = dev_lab.droplets[dev_lab.spec.primary]
    backup = dev_lab.droplets[dev_lab.spec.backup]
    intruder = dev_lab.add_vpc_host("x", f"{INTRUDER_IP}/24")
    _probe(primary.netns, INTRUDER_IP)
    _probe(backup.netns, primary.spec.private_ip)
    send = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112); "
        f"[s.sendto({VRRP_PACKET}, ('{primary.spec.private_ip}', 0)) for _ in range(5)]"
    )
    try:
        netns.run(intruder, ["python3", "-c", send])
        # Each packet either passes the ha_web chain or is dropped there: once the first
        # counter holds all 5, the second one's count is final.
        dev_lab.wait_for(
            lambda: _counts(primary.netns)[0] == 5, 5, "the primary to see the 5 adverts"
        )
        assert _counts(primary.netns) == [5, 0]
        # The peer's adverts (one per 0.3 s) pass the same firewall: every one counted before
        # the ha_web chain is counted after it too.
        dev_lab.wait_for(
            lambda: (seen := _counts(backup.netns))[0] > 0 and seen[1] == seen[0],
            5,
            "the backup to see the primary's adverts pass its firewall",
        )
    finally:
        for namespace in (primary.netns, backup.netns):
            netns.nft(namespace, "delete table inet lab_probe\n")


def test_token_file_is_0600_and_readable_only_by_the_agent_user(dev_lab: Lab) -> None:
    droplet = dev_lab.droplets[dev_lab.spec.primary]
    token = droplet.path("/etc/ha-web/token")
    passwd = droplet.path("/etc/passwd").read_text()
    agent_uid = next(
        int(line.split(":")[2]) for line in passwd.splitlines() if line.startswith("ha-web:")
    )
    assert token.stat().st_mode & 0o777 == 0o600
    assert token.stat().st_uid == agent_uid
    assert (
        droplet.run(["cat", "/etc/ha-web/token"], user="ha-web").stdout.strip()
        == dev_lab.spec.token
    )
    other = droplet.run(["cat", "/etc/ha-web/token"], user="keepalived_script")
    assert other.returncode != 0 and dev_lab.spec.token not in other.stdout


def test_the_token_appears_in_no_log(dev_lab: Lab) -> None:
    token = dev_lab.spec.token
    texts = {f"event {e.text}": e.text for e in dev_lab.events}
    texts |= {f"call {c.path}?{c.query}": c.path + c.query for c in dev_lab.emulator.calls()}
    for droplet in dev_lab.droplets.values():
        texts[f"{droplet.name} boot"] = "\n".join(line.text for line in droplet.boot_lines)
        for log in Path(droplet.root, "var/log").rglob("*"):
            if log.is_file():
                texts[str(log)] = log.read_text(errors="replace")
    assert any("ha-web-agent" in text for text in texts.values())
    assert [where for where, text in texts.items() if token in text] == []
