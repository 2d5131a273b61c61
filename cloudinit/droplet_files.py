"""The files cloud-init writes on a droplet: path, mode, owner and content."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from cloudinit import agent_archive, paths
from cloudinit.context import agent_config
from cloudinit.inputs import DropletInputs

Render = Callable[[str], str]


@dataclass(frozen=True)
class DropletFile:
    path: str
    content: str
    permissions: str = "0644"
    owner: str = "root:root"
    defer: bool = False
    """Written in cloud-init's final stage, after `users` made its owner."""
    encoding: str | None = None
    """How cloud-init decodes `content`, e.g. `gz+b64`."""

    def as_cloud_config(self) -> dict[str, object]:
        entry: dict[str, object] = {
            "path": self.path,
            "permissions": self.permissions,
            "owner": self.owner,
            "content": self.content,
        }
        if self.encoding:
            entry["encoding"] = self.encoding
        if self.defer:
            entry["defer"] = True
        return entry


def static_file(name: str) -> str:
    return resources.files("cloudinit").joinpath("files", name).read_text(encoding="utf-8")


def packed_agent() -> str:
    """The agent package as one zip, gzipped and base64 (cloudinit/agent_archive.py says
    why it is committed). As text it would take most of DigitalOcean's 64 KiB of user-data."""
    return base64.b64encode(agent_archive.checked_archive()).decode("ascii")


def droplet_files(inputs: DropletInputs, render: Render) -> list[DropletFile]:
    agent_owner = f"root:{paths.AGENT_USER}"
    token_owner = f"{paths.AGENT_USER}:{paths.AGENT_USER}"
    files = [
        DropletFile(paths.AGENT, render("ha-web-agent.j2"), "0755"),
        DropletFile(paths.AGENT_ARCHIVE, packed_agent(), encoding="gz+b64"),
        DropletFile(paths.CHECK_NGINX, render("check-nginx.j2"), "0755"),
        DropletFile(paths.FIREWALL, render("firewall.nft.j2")),
        DropletFile(paths.METADATA_LOCK, render("metadata-lock.nft.j2")),
        DropletFile(paths.KEEPALIVED_CONF, render("keepalived.conf.j2"), "0640"),
        DropletFile(paths.PEERS_CONF, static_file("ha-web-peers.conf")),
        DropletFile(paths.NGINX_SITE, render("nginx-site.j2")),
        DropletFile(f"{paths.WEB_ROOT}/index.html", render("index.html.j2")),
        DropletFile(paths.TMPFILES, static_file("ha-web-tmpfiles.conf")),
        *(
            DropletFile(f"{paths.SYSTEMD_DIR}/{unit}", static_file(unit))
            for unit in ("ha-web-metadata-lock.service", "ha-web-firewall.service")
        ),
        DropletFile(
            f"{paths.SYSTEMD_DIR}/keepalived.service.d/ha-web.conf",
            render("keepalived-ha-web.conf.j2"),
        ),
        DropletFile(paths.NGINX_DROPIN, render("nginx-ha-web.conf.j2")),
        *(
            DropletFile(f"{paths.SYSTEMD_DIR}/{unit}", render(f"{unit}.j2"))
            for unit in (
                "ha-web-peers.service",
                "ha-web-peers.timer",
                "ha-web-reconcile.service",
                "ha-web-reconcile.timer",
            )
        ),
        DropletFile(paths.AGENT_CONFIG, agent_config(inputs), "0640", agent_owner, defer=True),
        DropletFile(paths.TOKEN, inputs.failover_token + "\n", "0600", token_owner, defer=True),
    ]
    if inputs.settings.keepalived.source == "tarball":
        files.append(DropletFile(paths.BUILD_KEEPALIVED, static_file("build-keepalived"), "0755"))
    return files
