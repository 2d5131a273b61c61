"""One rule per setting. Each problem names the key, the bad value and what is allowed.

Every pattern is applied with `fullmatch`: `re.match` with `$` also accepts a trailing
newline, which would then reach a droplet. Every value that reaches a file on a droplet
is restricted here to characters that file's syntax reads literally, or quoted for it
by the renderer (only vrrpPassword, see `check_vrrp_password`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from components.settings import KEEPALIVED_URL_TEMPLATE, KNOWN_KEEPALIVED_SHA256, Settings

P = "ha-web"
MIN_NODES, MAX_NODES = 2, 10
MIN_KEEPALIVED = (2, 3, 0)
VRRP_PASS_MAX = 8
# A droplet's name, ha-web-<stack>-<index>, must be one DNS label (at most 63 characters).
MAX_STACK = 63 - len("ha-web-") - len(f"-{MAX_NODES - 1}")

_REGION = re.compile(r"[a-z]{3}[0-9]")
_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)+")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9.-]*")
_SSH_KEY = re.compile(r"[0-9]+|([0-9a-f]{2}:){15}[0-9a-f]{2}|SHA256:[A-Za-z0-9+/]{43}")
_VERSION = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEALTH_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
# Droplet names must be hostnames and tags allow only letters, digits, -, _ and :.
_STACK = re.compile(rf"[A-Za-z0-9]([A-Za-z0-9-]{{0,{MAX_STACK - 2}}}[A-Za-z0-9])?")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(\.{_LABEL})*|\[[0-9A-Fa-f:.]+\]"
_BASE_URL = re.compile(rf"(?P<scheme>https?)://(?P<host>{_HOST})(:(?P<port>[0-9]{{1,5}}))?/?")
# RFC 3986 path and query characters, less the ones a shell or a quote would treat specially.
_URL_TAIL = r"/[A-Za-z0-9._~!&+,;=:@%/-]*(\?[A-Za-z0-9._~!&+,;=:@%/?-]*)?"
_KEEPALIVED_URL = re.compile(
    rf"https://(?P<host>{_HOST})(:(?P<port>[0-9]{{1,5}}))?{_URL_TAIL}|file://{_URL_TAIL}"
)
# RFC 6750 b64token: the only form a bearer credential may take in an Authorization header.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
# keepalived reads a quoted string literally, except: `"` ends it, a backslash escapes the
# next character (a final one continues the line) and `$NAME` expands its built-in
# definitions. So: printable ASCII (0x20-0x7E) without `"`, `$` and the backslash.
_VRRP_PASS = re.compile(rf"[ !#%-\[\]-~]{{1,{VRRP_PASS_MAX}}}")


def _bad(key: str, value: object, allowed: str) -> str:
    return f"{P}:{key} is {value!r}; {allowed}"


def _in_range(key: str, value: float, low: float, high: float, unit: str = "") -> Iterator[str]:
    if not low <= value <= high:
        yield _bad(key, value, f"it must be from {low:g} to {high:g}{unit}")


def _names(s: Settings) -> Iterator[str]:
    if not _STACK.fullmatch(s.stack):
        yield (
            f"the stack name {s.stack!r} cannot name ha-web's resources: droplets are named "
            f"ha-web-<stack>-<n> (hostnames) and tagged ha-web-<stack>. Use 1 to {MAX_STACK} "
            "letters, digits and inner hyphens, for example: pulumi stack rename prod-eu"
        )


def _placement(s: Settings) -> Iterator[str]:
    if not _REGION.fullmatch(s.region):
        yield _bad("region", s.region, "use a DigitalOcean region slug such as nyc3, ams3, fra1")
    if not _SLUG.fullmatch(s.droplet_size):
        yield _bad("dropletSize", s.droplet_size, "use a size slug such as s-1vcpu-1gb")
    if not _IMAGE.fullmatch(s.image):
        yield _bad("image", s.image, "use an image slug such as ubuntu-24-04-x64, or an image id")
    if not MIN_NODES <= s.node_count <= MAX_NODES:
        yield _bad(
            "nodeCount", s.node_count, f"it must be from {MIN_NODES} to {MAX_NODES} (two or more)"
        )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _valid_host_and_port(match: re.Match[str]) -> bool:
    """The pattern admits the shape; the address inside [] and the port need a closer look."""
    host, port = match["host"], match["port"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
    return port is None or 1 <= int(port) <= 65535


def _api_urls(s: Settings) -> Iterator[str]:
    api = _BASE_URL.fullmatch(s.api_base_url)
    if not api or not _valid_host_and_port(api):
        yield _bad(
            "apiBaseUrl",
            s.api_base_url,
            "it must be an http(s) URL of a host and an optional port, such as "
            "https://api.digitalocean.com (no path, user, query or spaces)",
        )
    elif api["scheme"] == "http" and not s.allow_insecure_api and not _is_loopback(api["host"]):
        yield _bad(
            "apiBaseUrl",
            s.api_base_url,
            "every request to it carries the failover token, so it must be https:// "
            "(plain http only on a loopback address, or for a test emulator on a network you "
            f"trust with: pulumi config set {P}:allowInsecureApi true)",
        )
    meta = _BASE_URL.fullmatch(s.metadata_base_url)
    if not meta or not _valid_host_and_port(meta):
        yield _bad(
            "metadataBaseUrl",
            s.metadata_base_url,
            "it must be an http(s) URL of a host and an optional port, such as "
            "http://169.254.169.254 (no path, user, query or spaces)",
        )
        return
    try:
        ipaddress.IPv4Address(meta["host"])
    except ValueError:
        yield _bad(
            "metadataBaseUrl",
            s.metadata_base_url,
            "its host must be an IPv4 address, so the firewall can lock it to the agent",
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
            elif str(net) != s.vpc_ip_range:
                # It goes to DigitalOcean as written, and ipaddress also reads 10.0.0.0/255.255.0.0.
                yield _bad("vpcIpRange", s.vpc_ip_range, f"write it as {net}")
    for cidr in s.admin_cidrs:
        try:
            admin = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            admin = None
        # A scope (fe80::%eth0/64) is no network nft can match.
        if admin is None or getattr(admin.network_address, "scope_id", None):
            yield _bad(
                "adminCidrs",
                cidr,
                "each item must be a network such as 198.51.100.7/32 (host bits zero)",
            )
    for key in s.ssh_keys:
        if not _SSH_KEY.fullmatch(key):
            yield _bad("sshKeys", key, "each item must be a key id or its MD5 fingerprint")
    yield from _api_urls(s)


def _keepalived(s: Settings) -> Iterator[str]:
    k = s.keepalived
    match = _VERSION.fullmatch(k.version)
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
        if not k.sha256:
            if version_ok:
                yield (
                    f"{P}:keepalivedSha256 is not set, and ha-web knows no checksum for "
                    f"keepalived {k.version} (it knows "
                    f"{', '.join(sorted(KNOWN_KEEPALIVED_SHA256))}). Compute it from a tarball "
                    f"you trust and set it with: pulumi config set {P}:keepalivedSha256 "
                    "<64 hex digits>"
                )
        elif not _SHA256.fullmatch(k.sha256):
            yield _bad("keepalivedSha256", k.sha256, "it must be 64 lowercase hex digits")
        url = _KEEPALIVED_URL.fullmatch(k.url)
        # The default URL carries the version: a bad version is reported once, above.
        derived = k.url == KEEPALIVED_URL_TEMPLATE.format(version=k.version)
        if (not url or (url["host"] and not _valid_host_and_port(url))) and not derived:
            yield _bad(
                "keepalivedUrl",
                k.url,
                "it must be an https:// URL with a host and a path, or a file:/// path, "
                "without spaces or quotes",
            )
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
    if not _HEALTH_PATH.fullmatch(h.path):
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
        *_names(s),
        *_placement(s),
        *_network(s),
        *_keepalived(s),
        *_vrrp(s),
        *_health(s),
        *_agent(s),
    ]


def check_failover_token(raw: str | None) -> list[str]:
    """Never prints the token: it is a secret, and these messages reach the terminal and CI logs."""
    if not raw:
        return [
            f"{P}:failoverToken is not set. Create a custom-scoped DigitalOcean token with "
            "reserved_ip:update (and its companions droplet:read, actions:read), then run: "
            f"pulumi config set --secret {P}:failoverToken <token>"
        ]
    if not _BEARER_TOKEN.fullmatch(raw):
        return [
            f"{P}:failoverToken (not shown: it is a secret) has a space, a line break or another "
            "character a bearer token may not hold; it may have only letters, digits and "
            "- . _ ~ + / (then = padding), as DigitalOcean's dop_v1_<64 hex digits> tokens do. "
            f"Paste it again without the line break: pulumi config set --secret "
            f"{P}:failoverToken <token>"
        ]
    return []


def check_vrrp_password(raw: str | None, vrrp_version: int) -> list[str]:
    """PASS auth keeps only 8 bytes; a longer password would silently weaken. Never printed.

    Empty means unset: the program generates one."""
    if not raw or vrrp_version != 2:
        return []
    if not _VRRP_PASS.fullmatch(raw):
        return [
            f"{P}:vrrpPassword (not shown: it is a secret) must be 1 to {VRRP_PASS_MAX} printable "
            'ASCII characters other than ", $ and \\ (VRRPv2 PASS authentication uses only '
            f"{VRRP_PASS_MAX}, and keepalived reads those three specially even in quotes). "
            "Leave it unset to generate one."
        ]
    return []
