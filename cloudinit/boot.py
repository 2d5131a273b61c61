"""What cloud-init runs on a droplet, and in which order (docs/internals.md, "Boot order")."""

from __future__ import annotations

from cloudinit import paths
from cloudinit.context import metadata_ip
from cloudinit.inputs import DropletInputs

BASE_PACKAGES = ["nginx", "nftables", "curl", "python3"]
# keepalived's INSTALL lists these for Ubuntu; the build script needs nothing else.
BUILD_PACKAGES = [
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "libnl-3-dev",
    "libnl-genl-3-dev",
    "libsystemd-dev",
]
AGENT_UNITS = ["ha-web-peers.timer", "ha-web-reconcile.timer"]
METADATA_TABLE = "ha_web_metadata"
"""nft table of the metadata lock, apart from the firewall's `ha_web`."""

Command = list[str]


def packages(inputs: DropletInputs) -> list[str]:
    if inputs.settings.keepalived.source == "package":
        return [*BASE_PACKAGES, "keepalived"]
    return [*BASE_PACKAGES, *BUILD_PACKAGES]


def system_users() -> list[object]:
    """`default` keeps the image's usual login user; ours get no shell and no home."""
    return [
        "default",
        {
            "name": paths.AGENT_USER,
            "system": True,
            "shell": "/usr/sbin/nologin",
            "no_create_home": True,
        },
        {
            "name": paths.SCRIPT_USER,
            "system": True,
            "shell": "/usr/sbin/nologin",
            "no_create_home": True,
        },
    ]


def bootcmd(inputs: DropletInputs) -> list[Command]:
    """Lock the metadata address to root on the very first boot, before packages or
    secrets: user-data carries the failover token. On this and every later boot,
    ha-web-metadata-lock.service replaces the table with one that also lets ha-web in,
    before the network is up."""
    rule = (
        f"add table inet {METADATA_TABLE} {{ chain output {{ type filter hook output "
        f"priority filter; ip daddr {metadata_ip(inputs.settings)} meta skuid != 0 drop; }}; }}"
    )
    return [["cloud-init-per", "once", "ha-web-metadata-lock", "nft", rule]]


def runcmd(inputs: DropletInputs) -> list[Command]:
    pin = inputs.settings.keepalived
    install_keepalived: list[Command] = (
        [[paths.BUILD_KEEPALIVED, pin.url, pin.sha256, pin.version]]
        if pin.source == "tarball"
        else []
    )
    return [
        ["systemctl", "daemon-reload"],
        # The metadata lock first, and apart: it must hold even if firewall.nft cannot load.
        ["systemctl", "enable", "--now", "ha-web-metadata-lock.service"],
        ["systemctl", "enable", "--now", "ha-web-firewall.service"],
        ["systemd-tmpfiles", "--create", paths.TMPFILES],
        # The agent's launcher imports this unpacked, compiled copy (compiled as root: ha-web
        # cannot write there). From the zip, every notify would compile every module.
        ["/usr/bin/python3", "-m", "zipfile", "-e", paths.AGENT_ARCHIVE, paths.LIB_DIR],
        ["/usr/bin/python3", "-m", "compileall", "-q", paths.AGENT_MODULE],
        ["ln", "-sfn", paths.NGINX_SITE, paths.NGINX_SITE_LINK],
        ["rm", "-f", "/etc/nginx/sites-enabled/default"],
        # Restart, not reload: only a start runs the drop-in's ExecStartPost that tells keepalived
        # nginx is up, and apt started nginx before systemd-tmpfiles made its directory.
        ["systemctl", "restart", "nginx.service"],
        *install_keepalived,
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", *AGENT_UNITS],
        ["systemctl", "enable", "--now", "keepalived.service"],
    ]
