"""What the lab runs: droplets (name, id, addresses, user-data), the reserved IP and the token.

Either the Pulumi program's deployment of a stack (the default: exactly what `pulumi up`
would create), or `#cloud-config` files a user brings, to drill another configuration.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cloudinit.paths import BUILD_KEEPALIVED
from components.settings import DEFAULT_KEEPALIVED_VERSION
from lab.downloads import DOWNLOADS_IP
from lab.droplet import DropletSpec
from lab.local_cloud import LabAddresses, deploy, stack_config
from lab.topology import API_IP, METADATA_IP

LAB_TOKEN = "dop_v1_" + "1ab70ce2" * 8
"""The failover token the lab deploys with and its emulator accepts."""
LAB_SETTINGS = {
    # The emulator speaks plain http on an address inside the lab's own namespaces.
    "ha-web:apiBaseUrl": f"http://{API_IP}",
    "ha-web:allowInsecureApi": "true",
    "ha-web:metadataBaseUrl": f"http://{METADATA_IP}",
}
KEEPALIVED_URL = f"https://{DOWNLOADS_IP}/software/keepalived-{{version}}.tar.gz"
"""Where a lab droplet downloads keepalived: the emulator serves Debian's orig tarball there
(byte-identical to the release) over https with the lab's CA, so the build script's real
download, sha256 check and build run. keepalivedUrl must be https (settings_rules.py), and
the lab has no route to www.keepalived.org."""
AGENT_CONFIG = "/etc/ha-web/agent.json"
TOKEN_FILE = "/etc/ha-web/token"


class SpecError(ValueError):
    """The lab cannot run this configuration; the message says what to change."""


@dataclass
class LabSpec:
    droplets: list[DropletSpec]
    reserved_ip: str
    token: str
    primary: str
    failback: bool = True
    source: str = "stack dev"

    @property
    def backup(self) -> str:
        return next(d.name for d in self.droplets if d.name != self.primary)


def from_stack(
    stack: str = "dev", settings: Mapping[str, Any] | None = None, token: str = LAB_TOKEN
) -> LabSpec:
    """Deploy `stack` to the local cloud with the lab's API and metadata addresses.

    `settings` are extra `ha-web:` settings without the prefix (camelCase), as in tests.
    """
    config = {**stack_config(stack), **LAB_SETTINGS, "ha-web:failoverToken": token}
    for key, value in (settings or {}).items():
        config[f"ha-web:{key}"] = value if isinstance(value, str) else json.dumps(value)
    if "keepalivedUrl" not in (settings or {}):
        version = config.get("ha-web:keepalivedVersion") or DEFAULT_KEEPALIVED_VERSION
        config["ha-web:keepalivedUrl"] = KEEPALIVED_URL.format(version=version)
    deployment = deploy(stack, config)
    droplets = [
        DropletSpec(
            name=str(d.inputs["name"]),
            droplet_id=int(d.id),
            public_ip=str(d.outputs["ipv4Address"]),
            private_ip=str(d.outputs["ipv4AddressPrivate"]),
            user_data=str(d.inputs["userData"]),
            tags=[str(t) for t in d.inputs.get("tags") or []],
        )
        for d in deployment.droplets()
    ]
    nodes = deployment.outputs.get("nodes") or []
    primary = next((n["name"] for n in nodes if n.get("role") == "Primary"), droplets[0].name)
    failback = str(config.get("ha-web:failback", "true")).lower() != "false"
    return LabSpec(
        droplets, str(deployment.outputs["reservedIp"]), token, primary, failback, f"stack {stack}"
    )


def from_user_data(paths: Sequence[Path], addresses: LabAddresses | None = None) -> LabSpec:
    """Droplets from `#cloud-config` files, named and tagged by the agent.json each carries."""
    if len(paths) < 2:
        raise SpecError("give at least two user-data files: the lab drills a failover pair.")
    addresses = addresses or LabAddresses()
    droplets: list[DropletSpec] = []
    configs: list[dict[str, Any]] = []
    tokens: set[str] = set()
    for index, path in enumerate(paths):
        text = path.read_text(encoding="utf-8")
        document = _cloud_config(path, text)
        files = {str(entry["path"]): entry for entry in document.get("write_files") or []}
        agent = _agent_config(path, files)
        _check_lab_urls(path, agent)
        _check_keepalived_url(path, document)
        configs.append(agent)
        if TOKEN_FILE in files:
            tokens.add(str(files[TOKEN_FILE].get("content", "")).strip())
        droplets.append(
            DropletSpec(
                name=str(agent["droplet_name"]),
                droplet_id=2001 + index,
                public_ip=str(addresses.public.network_address + 10 + index),
                private_ip=str(addresses.private.network_address + 10 + index),
                user_data=text,
                tags=[str(agent["cluster_tag"])],
            )
        )
    reserved = {str(c["reserved_ip"]) for c in configs}
    if len(reserved) != 1 or len(tokens) > 1:
        raise SpecError(
            "the user-data files disagree on reserved_ip or the token; render them from one stack."
        )
    priorities: dict[str, int] = configs[0].get("priorities") or {}
    primary = max(droplets, key=lambda d: priorities.get(d.name, 0)).name
    ipaddress.IPv4Address(next(iter(reserved)))
    token = tokens.pop() if tokens else LAB_TOKEN
    names = ", ".join(str(p) for p in paths)
    return LabSpec(droplets, reserved.pop(), token, primary, True, f"user-data {names}")


def _cloud_config(path: Path, text: str) -> dict[str, Any]:
    if not text.startswith("#cloud-config"):
        raise SpecError(f"{path} does not start with #cloud-config; give cloud-config user-data.")
    document: dict[str, Any] = yaml.safe_load(text) or {}
    return document


def _agent_config(path: Path, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    entry = files.get(AGENT_CONFIG)
    if entry is None:
        raise SpecError(
            f"{path} writes no {AGENT_CONFIG}; the lab names and tags the droplet from it."
        )
    config: dict[str, Any] = json.loads(str(entry.get("content", "{}")))
    for key in ("droplet_name", "cluster_tag", "reserved_ip"):
        if key not in config:
            raise SpecError(f"{path}: {AGENT_CONFIG} has no {key!r}.")
    return config


def _check_lab_urls(path: Path, agent: dict[str, Any]) -> None:
    wanted = {"api_base_url": LAB_SETTINGS["ha-web:apiBaseUrl"]}
    wanted["metadata_base_url"] = LAB_SETTINGS["ha-web:metadataBaseUrl"]
    for key, url in wanted.items():
        if str(agent.get(key, "")).rstrip("/") != url:
            raise SpecError(
                f"{path}: {AGENT_CONFIG} has {key} {agent.get(key)!r}; the lab's emulator is at "
                f"{url}. Render it with ha-web:apiBaseUrl={LAB_SETTINGS['ha-web:apiBaseUrl']} and "
                f"ha-web:metadataBaseUrl={LAB_SETTINGS['ha-web:metadataBaseUrl']}."
            )


def _check_keepalived_url(path: Path, document: Mapping[str, Any]) -> None:
    """A droplet can reach no download host but the lab's: refuse, before anything boots,
    user-data whose keepalived build would fail at its download."""
    for command in document.get("runcmd") or []:
        if not (isinstance(command, list) and len(command) == 4 and command[0] == BUILD_KEEPALIVED):
            continue
        url, version = str(command[1]), str(command[3])
        if not url.startswith(f"https://{DOWNLOADS_IP}/"):
            served = KEEPALIVED_URL.format(version=version)
            raise SpecError(
                f"{path}: keepalived is downloaded from {url}, which a lab droplet cannot reach; "
                f"the lab serves it at {served}. Render it with ha-web:keepalivedUrl={served}."
            )


def decode(content: str, encoding: str) -> bytes:
    """A `write_files` entry's bytes, as cloud-init decodes its `encoding`."""
    kind = encoding.lower()
    if kind in ("b64", "base64"):
        return base64.b64decode(content)
    if kind in ("gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
        return gzip.decompress(base64.b64decode(content))
    return str(content).encode()
