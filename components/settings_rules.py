"""One rule per setting. Each problem names the key, the bad value and what is allowed."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from urllib.parse import urlparse

from components.settings import KNOWN_KEEPALIVED_SHA256, Settings

P = "ha-web"
MIN_NODES, MAX_NODES = 2, 10
MIN_KEEPALIVED = (2, 3, 0)
VRRP_PASS_MAX = 8

_REGION = re.compile(r"^[a-z]{3}[0-9]$")
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")
_IMAGE = re.compile(r"^([a-z0-9][a-z0-9.-]*|[0-9]+)$")
_SSH_KEY = re.compile(r"^([0-9]+|([0-9a-f]{2}:){15}[0-9a-f]{2}|SHA256:[A-Za-z0-9+/]{43})$")
_VERSION = re.compile(r"^([0-9]+)\.([0-9]+)\.([0-9]+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEALTH_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")


def _bad(key: str, value: object, allowed: str) -> str:
    return f"{P}:{key} is {value!r}; {allowed}"


def _in_range(key: str, value: float, low: float, high: float, unit: str = "") -> Iterator[str]:
    if not low <= value <= high:
        yield _bad(key, value, f"it must be from {low:g} to {high:g}{unit}")


def _placement(s: Settings) -> Iterator[str]:
    if not _REGION.match(s.region):
        yield _bad("region", s.region, "use a DigitalOcean region slug such as nyc3, ams3, fra1")
    if not _SLUG.match(s.droplet_size):
        yield _bad("dropletSize", s.droplet_size, "use a size slug such as s-1vcpu-1gb")
    if not _IMAGE.match(s.image):
        yield _bad("image", s.image, "use an image slug such as ubuntu-24-04-x64, or an image id")
    if not MIN_NODES <= s.node_count <= MAX_NODES:
        yield _bad(
            "nodeCount", s.node_count, f"it must be from {MIN_NODES} to {MAX_NODES} (two or more)"
        )


def _network(s: Settings) -> Iterator[str]:
    if s.vpc_ip_range is not None:
        try:
            net = ipaddress.ip_network(s.vpc_ip_range, strict=True)
        except ValueError:
            yield _bad("vpcIpRange", s.vpc_ip_range, "use an IPv4 CIDR such as 10.110.0.0/20")
        else:
            if net.version != 4 or not net.is_private or not 16 <= net.prefixlen <= 24:
                yield _bad(
                    "vpcIpRange",
                    s.vpc_ip_range,
                    "it must be a private (RFC 1918) IPv4 range from /16 to /24",
                )
    for cidr in s.admin_cidrs:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            yield _bad(
                "adminCidrs",
                cidr,
                "each item must be a network such as 198.51.100.7/32 (host bits zero)",
            )
    for key in s.ssh_keys:
        if not _SSH_KEY.match(key):
            yield _bad("sshKeys", key, "each item must be a key id or its MD5 fingerprint")
    for name, url in (("apiBaseUrl", s.api_base_url), ("metadataBaseUrl", s.metadata_base_url)):
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            yield _bad(name, url, "it must be an http(s) URL such as https://api.digitalocean.com")
    meta = urlparse(s.metadata_base_url).hostname
    if meta:
        try:
            ipaddress.IPv4Address(meta)
        except ValueError:
            yield _bad(
                "metadataBaseUrl",
                s.metadata_base_url,
                "its host must be an IPv4 address, so the firewall can lock it to the agent",
            )


def _keepalived(s: Settings) -> Iterator[str]:
    k = s.keepalived
    match = _VERSION.match(k.version)
    version_ok = match is not None and tuple(int(g) for g in match.groups()) >= MIN_KEEPALIVED
    if not match:
        yield _bad("keepalivedVersion", k.version, "use a release number such as 2.3.4")
    elif not version_ok:
        yield _bad(
            "keepalivedVersion",
            k.version,
            "the configs ha-web writes need keepalived 2.3.0 or newer (VRRPv3 without a "
            "virtual address, sub-second script intervals); pin 2.3.4",
        )
    if k.source not in ("tarball", "package"):
        yield _bad("keepalivedSource", k.source, "use tarball or package")
    if k.source == "tarball":
        if not k.sha256 and version_ok:
            yield (
                f"{P}:keepalivedSha256 is not set, and ha-web knows no checksum for keepalived "
                f"{k.version} (it knows {', '.join(sorted(KNOWN_KEEPALIVED_SHA256))}). "
                "Compute it from a tarball you trust and set it with: "
                f"pulumi config set {P}:keepalivedSha256 <64 hex digits>"
            )
        elif k.sha256 and not _SHA256.match(k.sha256):
            yield _bad("keepalivedSha256", k.sha256, "it must be 64 lowercase hex digits")
        parsed = urlparse(k.url)
        if parsed.scheme not in ("https", "http", "file"):
            yield _bad("keepalivedUrl", k.url, "it must be an https:// (or file://) URL")
    elif k.source == "package":
        # Ubuntu 24.04 packages keepalived 2.2.8, which rejects VRRPv3 without
        # a virtual address and fractional script intervals.
        if s.vrrp.version != 2:
            yield _bad(
                "vrrpVersion",
                s.vrrp.version,
                "keepalivedSource package (keepalived 2.2) needs vrrpVersion 2",
            )
        if not s.health.interval.is_integer():
            yield _bad(
                "healthInterval",
                s.health.interval,
                "keepalivedSource package (keepalived 2.2) needs whole seconds",
            )


def _vrrp(s: Settings) -> Iterator[str]:
    v = s.vrrp
    if v.version not in (2, 3):
        yield _bad("vrrpVersion", v.version, "use 2 or 3")
    yield from _in_range("vrrpRouterId", v.router_id, 1, 255)
    if v.version == 2:
        if not v.advert_interval.is_integer() or not 1 <= v.advert_interval <= 255:
            yield _bad(
                "advertInterval",
                v.advert_interval,
                "VRRPv2 needs whole seconds from 1 to 255; vrrpVersion 3 allows sub-second adverts",
            )
    elif v.version == 3:
        centis = v.advert_interval * 100
        if not 1 <= centis <= 4095 or abs(centis - round(centis)) > 1e-6:
            yield _bad(
                "advertInterval",
                v.advert_interval,
                "VRRPv3 needs 0.01 to 40.95 seconds, in steps of 0.01",
            )
    if len(v.priorities) != s.node_count:
        yield _bad(
            "priorities",
            list(v.priorities),
            f"give one priority per node ({s.node_count}), or leave it unset",
        )
    for priority in v.priorities:
        if not 1 <= priority <= 254:
            yield _bad(
                "priorities", priority, "each must be from 1 to 254 (255 is the address owner's)"
            )
    if any(a <= b for a, b in zip(v.priorities, v.priorities[1:], strict=False)):
        yield _bad(
            "priorities",
            list(v.priorities),
            "they must be distinct and strictly decreasing: node 0 is the primary",
        )


def _health(s: Settings) -> Iterator[str]:
    h = s.health
    if not _HEALTH_PATH.match(h.path):
        yield _bad("healthPath", h.path, "it must start with / and use only URL-safe characters")
    interval_ok = 0.1 <= h.interval <= 60
    yield from _in_range("healthInterval", h.interval, 0.1, 60, " seconds")
    if interval_ok and not 0.05 <= h.timeout <= h.interval:
        yield _bad(
            "healthTimeout",
            h.timeout,
            f"it must be from 0.05 seconds up to healthInterval ({h.interval:g})",
        )
    yield from _in_range("healthFall", h.fall, 1, 20)
    yield from _in_range("healthRise", h.rise, 1, 20)


def _agent(s: Settings) -> Iterator[str]:
    a = s.agent
    yield from _in_range("reconcileInterval", a.reconcile_interval, 5, 3600, " seconds")
    yield from _in_range("peersRefreshInterval", a.peers_refresh_interval, 5, 3600, " seconds")
    yield from _in_range("claimTimeout", a.claim_timeout, 5, 600, " seconds")


def check(s: Settings) -> list[str]:
    return [
        *_placement(s),
        *_network(s),
        *_keepalived(s),
        *_vrrp(s),
        *_health(s),
        *_agent(s),
    ]


def check_vrrp_password(raw: str | None, vrrp_version: int) -> list[str]:
    """PASS auth keeps only 8 characters; a longer password would silently weaken."""
    if raw is None or vrrp_version != 2:
        return []
    if not 1 <= len(raw) <= VRRP_PASS_MAX or not raw.isprintable() or '"' in raw:
        return [
            f"{P}:vrrpPassword must be 1 to {VRRP_PASS_MAX} printable characters without quotes "
            "(VRRPv2 PASS authentication uses only 8). Leave it unset to generate one."
        ]
    return []
