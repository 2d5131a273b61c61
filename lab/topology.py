"""The lab's networks: a router, a VPC bridge, a client, and one namespace per droplet.

    client (192.0.2.100) ── router ── bridge "pub" ── eth0 of each droplet (public IPs)
                             │  lo: API 192.0.2.10, metadata 192.0.2.254 (the emulator)
                             │  nft: reserved IP ─DNAT→ the holder's public IP
    vpc namespace: bridge "vpc0" ── eth1 of each droplet (private IPs, VRRP)

Every address lives inside namespaces the lab made; nothing is routed to the host.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from lab import netns
from lab.netns import NetnsError

API_IP = "192.0.2.10"
METADATA_IP = "192.0.2.254"
CLIENT_IP = "192.0.2.100"
CLIENT_GATEWAY = "192.0.2.1"
PUBLIC_GATEWAY = "198.51.100.1"
PREFIX_LEN = 24
NAT_TABLE = "ha_web_lab"


def nic_mac(address: str) -> str:
    """A droplet's NIC keeps its MAC address through a reboot or a crash, so its peers' and
    the router's neighbour caches stay right: a fresh random MAC after a crash would leave
    them sending to the old one for seconds, a delay no droplet has."""
    return "02:00:" + ":".join(f"{int(octet):02x}" for octet in address.split("."))


@dataclass(frozen=True)
class DropletLinks:
    netns: str
    short: str
    """Names its veth ends in the router and the VPC, so at most 12 characters."""
    public_ip: str
    private_ip: str


class Topology:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.router = f"{prefix}-router"
        self.vpc = f"{prefix}-vpc"
        self.client = f"{prefix}-client"
        self.created: list[str] = []

    @property
    def namespaces(self) -> list[str]:
        return list(self.created)

    def _add(self, name: str) -> None:
        netns.ip("netns", "add", name)
        self.created.append(name)
        netns.ip("-n", name, "link", "set", "lo", "up")

    def create(self) -> None:
        for name in (self.router, self.vpc, self.client):
            self._add(name)
        r = self.router
        netns.run(r, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        for address in (API_IP, METADATA_IP):
            netns.ip("-n", r, "addr", "add", f"{address}/32", "dev", "lo")
        netns.ip("-n", r, "link", "add", "pub", "type", "bridge")
        netns.ip("-n", r, "addr", "add", f"{PUBLIC_GATEWAY}/{PREFIX_LEN}", "dev", "pub")
        netns.ip("-n", r, "link", "set", "pub", "up")
        netns.ip("link", "add", "eth0", "netns", self.client, "type", "veth",
                 "peer", "name", "client", "netns", r)  # fmt: skip
        netns.ip("-n", r, "addr", "add", f"{CLIENT_GATEWAY}/{PREFIX_LEN}", "dev", "client")
        netns.ip("-n", r, "link", "set", "client", "up")
        netns.ip("-n", self.client, "addr", "add", f"{CLIENT_IP}/{PREFIX_LEN}", "dev", "eth0")
        netns.ip("-n", self.client, "link", "set", "eth0", "up")
        netns.ip("-n", self.client, "route", "add", "default", "via", CLIENT_GATEWAY)
        netns.ip("-n", self.vpc, "link", "add", "vpc0", "type", "bridge")
        netns.ip("-n", self.vpc, "link", "set", "vpc0", "up")
        # The reserved IP: DigitalOcean routes it to the holder; here a DNAT map does.
        netns.nft(
            r,
            f"table ip {NAT_TABLE} {{\n"
            "  map reserved { type ipv4_addr : ipv4_addr; }\n"
            "  chain prerouting { type nat hook prerouting priority dstnat;"
            " dnat to ip daddr map @reserved; }\n"
            "}\n",
        )

    def add_droplet(self, links: DropletLinks) -> None:
        self._add(links.netns)
        wires = (
            ("eth0", f"{links.short}p", self.router, "pub", links.public_ip),
            ("eth1", f"{links.short}v", self.vpc, "vpc0", links.private_ip),
        )
        for inside, outside, peer_ns, bridge, address in wires:
            netns.ip("link", "add", inside, "address", nic_mac(address), "netns", links.netns,
                     "type", "veth", "peer", "name", outside, "netns", peer_ns)  # fmt: skip
            netns.ip("-n", peer_ns, "link", "set", outside, "master", bridge, "up")
            netns.ip("-n", links.netns, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", inside)
        self.set_links(links.netns, up=True)

    def attach_to_vpc(self, short: str, private_cidr: str) -> str:
        """A bare namespace on the VPC bridge (no droplet in it), e.g. an intruder for tests."""
        namespace = f"{self.prefix}-{short}"
        self._add(namespace)
        netns.ip("link", "add", "eth1", "netns", namespace, "type", "veth",
                 "peer", "name", f"{short}v", "netns", self.vpc)  # fmt: skip
        netns.ip("-n", self.vpc, "link", "set", f"{short}v", "master", "vpc0", "up")
        netns.ip("-n", namespace, "addr", "add", private_cidr, "dev", "eth1")
        netns.ip("-n", namespace, "link", "set", "eth1", "up")
        return namespace

    def set_links(self, namespace: str, up: bool) -> None:
        """Down is a powered-off droplet: it answers nothing, not even with a reset."""
        for inside in ("eth0", "eth1"):
            netns.ip("-n", namespace, "link", "set", inside, "up" if up else "down")
        if up:
            # A link going down takes its routes with it.
            netns.ip("-n", namespace, "route", "replace", "default", "via", PUBLIC_GATEWAY)

    def remove_droplet(self, namespace: str) -> None:
        self._delete(namespace)

    def route_reserved(self, reserved_ip: str, public_ip: str | None) -> None:
        script = f"flush map ip {NAT_TABLE} reserved\n"
        if public_ip:
            script += f"add element ip {NAT_TABLE} reserved {{ {reserved_ip} : {public_ip} }}\n"
        netns.nft(self.router, script)

    def partition(self, on: bool, whole: bool = False) -> None:
        """Cut the VPC bridge between droplets: VRRP only, or every packet when `whole`.

        Each droplet still reaches the router (API, metadata, client, the others' public IPs)."""
        table = "table bridge ha_web_lab_partition"
        if on:
            match = "" if whole else "ip protocol vrrp "
            netns.nft(
                self.vpc,
                f"{table} {{\n chain forward {{\n  type filter hook forward priority 0;\n"
                f"  {match}drop\n }}\n}}\n",
            )
        else:
            netns.nft(self.vpc, f"{table}\ndelete {table}\n")

    def block_api(self, public_ip: str, on: bool) -> None:
        """Make the API unreachable from one droplet (the metadata service still answers)."""
        name = "ha_web_lab_block_" + public_ip.replace(".", "_")
        table = f"table inet {name}"
        if on:
            netns.nft(
                self.router,
                f"{table} {{\n chain input {{\n  type filter hook input priority 0;\n"
                f"  ip saddr {public_ip} ip daddr {API_IP} drop\n }}\n}}\n",
            )
        else:
            netns.nft(self.router, f"{table}\ndelete {table}\n")

    def destroy(self) -> None:
        for name in reversed(self.created[:]):
            self._delete(name)

    def _delete(self, name: str) -> None:
        # Deleting a namespace destroys its veths, and so their peer ends too.
        with contextlib.suppress(NetnsError):
            netns.ip("netns", "delete", name)
        if name in self.created:
            self.created.remove(name)
