"""Lay a droplet's `#cloud-config` files into a staging tree, unmodified, at the paths
cloud-init would write them (the staging tree mirrors `/`), so `keepalived --config-test`
can check every rendered stack in seconds on the host. The lab's droplets do not use this:
real cloud-init writes their files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.sandbox import add_system_users

Command = list[str]


@dataclass(frozen=True)
class CloudConfig:
    bootcmd: list[Command]
    system_users: list[str]
    """Users the document creates (the image's `default` user is not one of them)."""
    packages: list[str]
    write_files: list[dict[str, Any]]
    runcmd: list[Command]


def parse(user_data: str) -> CloudConfig:
    if not user_data.startswith("#cloud-config\n"):
        raise ValueError(
            "user-data must start with '#cloud-config': the lab runs cloud-config only"
        )
    document = yaml.safe_load(user_data) or {}
    return CloudConfig(
        bootcmd=[list(map(str, c)) for c in document.get("bootcmd", [])],
        system_users=[u["name"] for u in document.get("users", []) if isinstance(u, dict)],
        packages=list(document.get("packages", [])),
        write_files=list(document.get("write_files", [])),
        runcmd=[list(map(str, c)) for c in document.get("runcmd", [])],
    )


def _ids(staging: Path) -> tuple[dict[str, int], dict[str, int]]:
    def table(name: str) -> dict[str, int]:
        lines = (staging / "etc" / name).read_text().splitlines()
        return {f[0]: int(f[2]) for f in (line.split(":") for line in lines) if len(f) > 2}

    return table("passwd"), table("group")


def create_users(config: CloudConfig, staging: Path) -> None:
    """What cloud-init's `users` module does, into the staging tree's passwd and group."""
    add_system_users(staging, config.system_users)


def write_files(config: CloudConfig, staging: Path, *, deferred: bool) -> list[Path]:
    """One stage of `write_files`: the early entries, or the `defer: true` ones.

    Owners are resolved against the staging tree's passwd and group, as cloud-init
    resolves them on the droplet; run `create_users` first.
    """
    users, groups = _ids(staging)
    written = []
    for entry in config.write_files:
        if bool(entry.get("defer", False)) != deferred:
            continue
        target = staging / str(entry["path"]).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(str(entry.get("content", "")))
        target.chmod(int(str(entry.get("permissions", "0644")), 8))
        user, _, group = str(entry.get("owner", "root:root")).partition(":")
        os.chown(target, users[user], groups[group or user])
        written.append(target)
    return written
