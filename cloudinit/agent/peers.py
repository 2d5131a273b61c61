"""Peers: who else is in the cluster. `peers` (as ha-web) asks the API and writes peers.json;
`apply-peers` (as root) hands it to keepalived and the firewall."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import time
from pathlib import Path
from typing import Any, NamedTuple

from .api import DigitalOcean, Droplet
from .config import Config
from .errors import FatalApiError, RetryableError
from .files import read_json, write_atomic, write_json
from .identity import load_identity
from .log import LOG
from .state import keepalived_alive
from .token_file import read_token


class Member(NamedTuple):
    id: int
    name: str
    private_ip: str


class PeerSet(NamedTuple):
    me: Member
    peers: tuple[Member, ...]

    def to_json(self, fetched_at: float) -> dict[str, Any]:
        return {
            "self": self.me._asdict(),
            "peers": [p._asdict() for p in self.peers],
            "fetched_at": fetched_at,
        }

    @classmethod
    def from_json(cls, raw: Any) -> PeerSet | None:
        try:
            me = Member(**raw["self"])
            return cls(me, tuple(Member(**p) for p in raw["peers"]))
        except (KeyError, TypeError):
            return None


def read_peers(cfg: Config) -> PeerSet | None:
    return PeerSet.from_json(read_json(cfg.peers_file))


VPC_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


def private_ipv4(value: str) -> ipaddress.IPv4Address:
    """A VPC address. DigitalOcean VPCs use RFC 1918 ranges only; Python's is_private is wider."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IPv4 address in dotted form")
    address = ipaddress.IPv4Address(value)
    if not any(address in net for net in VPC_RANGES):
        raise ValueError(f"{value} is not a private IPv4 address (10/8, 172.16/12, 192.168/16)")
    return address


def _members(droplets: list[Droplet]) -> list[Member]:
    members = []
    for droplet in droplets:
        try:
            members.append(
                Member(droplet.id, droplet.name, str(private_ipv4(droplet.private_ip or "")))
            )
        except ValueError:
            LOG.warning(
                "droplet %s (%d) has no private IPv4 (%s); skipping it",
                droplet.name,
                droplet.id,
                droplet.private_ip,
            )
    return members


def refresh_peers(cfg: Config) -> int:
    me = load_identity(cfg)
    known = read_peers(cfg)
    has_known = known is not None and bool(known.peers)
    try:
        members = _members(
            DigitalOcean(cfg, read_token(cfg.token_file)).tagged_droplets(cfg.cluster_tag)
        )
    except (FatalApiError, RetryableError) as exc:
        if has_known:
            LOG.warning(
                "could not list droplets tagged %s (%s); keeping the known peers",
                cfg.cluster_tag,
                exc,
            )
            return 0
        LOG.error(
            "could not list droplets tagged %s (%s) and no peer is known yet", cfg.cluster_tag, exc
        )
        return 1
    peers = tuple(
        sorted((m for m in members if m.id != me.droplet_id), key=lambda m: (m.name, m.id))
    )
    if not peers:
        if has_known:
            LOG.warning(
                "the API lists no other droplet tagged %s; keeping the known peers", cfg.cluster_tag
            )
            return 0
        LOG.error(
            "no peer known: no other droplet with tag %s has a private IPv4. "
            "Check the tag and that the other droplets are in the same VPC",
            cfg.cluster_tag,
        )
        return 1
    names = {m.id: m.name for m in members}
    current = PeerSet(
        Member(me.droplet_id, names.get(me.droplet_id, cfg.droplet_name), me.private_ip), peers
    )
    if current == known:
        return 0
    write_json(cfg.peers_file, current.to_json(time.time()))
    LOG.info("peers now %s", ", ".join(f"{p.name}={p.private_ip}" for p in peers))
    return 0


def render_peers_conf(peers: PeerSet) -> str:
    lines = [
        "# Written by ha-web-agent apply-peers from the DigitalOcean API; rewritten on change.",
        f"unicast_src_ip {peers.me.private_ip}",
        "unicast_peer {",
        *(f"  {p.private_ip}" for p in peers.peers),
        "}",
    ]
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, text: str) -> bool:
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    write_atomic(path, text)
    return True


def update_nft_set(cfg: Config, peers: PeerSet) -> None:
    """The firewall lets VRRP in only from these addresses. Missing nft or table: warn only."""
    # Imported here: only apply-peers needs them, and they cost notify's start about 3 ms.
    import shutil
    import subprocess

    nft = shutil.which("nft")
    if nft is None:
        LOG.warning("nft not found; the firewall's VRRP peer set was not updated. Install nftables")
        return
    target = f"inet {cfg.nft_table} vrrp_peers"
    script = f"flush set {target}\n"
    if peers.peers:
        script += f"add element {target} {{ {', '.join(p.private_ip for p in peers.peers)} }}\n"
    result = subprocess.run(
        [nft, "-f", "-"], input=script, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        LOG.warning(
            "could not update nft set %s (%s); is %s loaded? VRRP from peers may be dropped",
            target,
            result.stderr.strip(),
            cfg.nft_table,
        )


def reload_keepalived(cfg: Config) -> None:
    try:
        pid = int(cfg.keepalived_pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if keepalived_alive(pid):
        os.kill(pid, signal.SIGHUP)
        LOG.info("peers changed: reloaded keepalived (pid %d)", pid)


def apply_peers(cfg: Config) -> int:
    peers = read_peers(cfg)
    if peers is None:
        write_if_changed(cfg.hold_file, "1\n")
        LOG.error(
            "no peers file %s: run `ha-web-agent peers` as ha-web first; keepalived stays held",
            cfg.peers_file,
        )
        return 1
    try:
        for member in (peers.me, *peers.peers):
            private_ipv4(member.private_ip)
    except ValueError as exc:
        LOG.error(
            "refusing %s: %s. Nothing was changed; delete the file and run peers again",
            cfg.peers_file,
            exc,
        )
        return 1
    changed = write_if_changed(cfg.peers_conf, render_peers_conf(peers))
    update_nft_set(cfg, peers)
    held = not peers.peers
    if write_if_changed(cfg.hold_file, "1\n" if held else "0\n"):
        LOG.info("keepalived %s", "held: no peer known" if held else "released: peers known")
    if changed:
        LOG.info("wrote %s for %d peer(s)", cfg.peers_conf, len(peers.peers))
        reload_keepalived(cfg)
    return 0
