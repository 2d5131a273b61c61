"""Read a stack's config into `Settings`, reporting every problem at once.

Values are read as raw strings and parsed here, not with `Config.get_int` and
friends, so that one run can list every bad key instead of stopping at the
first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar, cast

import pulumi

from components import settings_rules
from components.settings import (
    DEFAULTS,
    KEEPALIVED_URL_TEMPLATE,
    KNOWN_KEEPALIVED_SHA256,
    AgentTimings,
    HealthCheck,
    KeepalivedPin,
    KeepalivedSourceKind,
    Secrets,
    Settings,
    VrrpSettings,
)

PROJECT = "ha-web"
T = TypeVar("T")


class SettingsError(pulumi.RunError):
    """Bad stack config. Raised before any resource exists."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"ha-web cannot deploy this stack; fix these settings and run again:\n{lines}"
        )


class _Reader:
    def __init__(self, config: pulumi.Config) -> None:
        self.config = config
        self.problems: list[str] = []

    def _raw(self, key: str) -> str | None:
        value = self.config.get(key)
        return None if value is None or value == "" else value

    def _parse(self, key: str, parse: Callable[[str], T], kind: str) -> T:
        raw = self._raw(key)
        if raw is None:
            return cast(T, DEFAULTS[key])
        try:
            return parse(raw)
        except ValueError:
            self.problems.append(
                f"{PROJECT}:{key} is {raw!r}, which is not {kind}. "
                f"Set it with: pulumi config set {PROJECT}:{key} <{kind}>"
            )
            return cast(T, DEFAULTS[key])

    def text(self, key: str) -> str:
        return self._parse(key, str, "a string")

    def integer(self, key: str) -> int:
        return self._parse(key, _parse_int, "a whole number")

    def number(self, key: str) -> float:
        return self._parse(key, float, "a number")

    def boolean(self, key: str) -> bool:
        return self._parse(key, _parse_bool, "true or false")

    def strings(self, key: str) -> tuple[str, ...]:
        return tuple(self._parse(key, _parse_list, "a list"))

    def integers(self, key: str) -> tuple[int, ...]:
        items = self._parse(key, _parse_list, "a list of whole numbers")
        try:
            return tuple(_parse_int(i) for i in items)
        except ValueError:
            self.problems.append(f"{PROJECT}:{key} is {items!r}; every item must be a whole number")
            return ()


def _parse_int(raw: str) -> int:
    value = float(raw)
    if not value.is_integer():
        raise ValueError(raw)
    return int(value)


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ValueError(raw)


def _parse_list(raw: str) -> list[str]:
    """A YAML list in the stack file arrives as JSON; a CLI value may be comma-separated."""
    stripped = raw.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise ValueError(raw) from err
        if not isinstance(items, list):
            raise ValueError(raw)
        return [str(i) for i in items]
    return [part.strip() for part in stripped.split(",") if part.strip()]


def _raw_secret(key: str) -> str | None:
    value = pulumi.runtime.get_config(f"{PROJECT}:{key}")
    return None if value is None else str(value)


def default_priorities(node_count: int) -> tuple[int, ...]:
    """Node 0 highest; steps of 10 leave room between nodes for track weights."""
    return tuple(200 - 10 * index for index in range(node_count))


def _keepalived_pin(read: _Reader) -> KeepalivedPin:
    version = read.text("keepalivedVersion")
    sha256 = read.text("keepalivedSha256") or KNOWN_KEEPALIVED_SHA256.get(version, "")
    url = read.text("keepalivedUrl") or KEEPALIVED_URL_TEMPLATE.format(version=version)
    source = cast(KeepalivedSourceKind, read.text("keepalivedSource"))
    return KeepalivedPin(version=version, sha256=sha256, url=url, source=source)


def read_settings(config: pulumi.Config, stack: str) -> tuple[Settings, Secrets]:
    """Parse and validate; raise `SettingsError` listing every problem."""
    read = _Reader(config)
    node_count = read.integer("nodeCount")
    priorities = read.integers("priorities") or default_priorities(node_count)
    vpc_ip_range = read.text("vpcIpRange")
    settings = Settings(
        stack=stack,
        region=read.text("region"),
        droplet_size=read.text("dropletSize"),
        image=read.text("image"),
        node_count=node_count,
        vpc_ip_range=vpc_ip_range or None,
        ssh_keys=read.strings("sshKeys"),
        admin_cidrs=read.strings("adminCidrs"),
        keepalived=_keepalived_pin(read),
        vrrp=VrrpSettings(
            version=read.integer("vrrpVersion"),
            router_id=read.integer("vrrpRouterId"),
            advert_interval=read.number("advertInterval"),
            priorities=priorities,
            failback=read.boolean("failback"),
        ),
        health=HealthCheck(
            path=read.text("healthPath"),
            interval=read.number("healthInterval"),
            timeout=read.number("healthTimeout"),
            fall=read.integer("healthFall"),
            rise=read.integer("healthRise"),
        ),
        agent=AgentTimings(
            reconcile_interval=read.integer("reconcileInterval"),
            peers_refresh_interval=read.integer("peersRefreshInterval"),
            claim_timeout=read.integer("claimTimeout"),
        ),
        api_base_url=read.text("apiBaseUrl"),
        allow_insecure_api=read.boolean("allowInsecureApi"),
        metadata_base_url=read.text("metadataBaseUrl"),
    )
    problems = read.problems + settings_rules.check(settings)

    # Secrets are checked as raw strings, without unwrapping their Outputs; no message
    # prints them.
    problems += settings_rules.check_failover_token(_raw_secret("failoverToken"))
    raw_password = _raw_secret("vrrpPassword")
    problems += settings_rules.check_vrrp_password(raw_password, settings.vrrp.version)

    if problems:
        raise SettingsError(problems)
    failover_token = config.get_secret("failoverToken")
    assert failover_token is not None
    return settings, Secrets(
        failover_token=failover_token,
        # Empty (Pulumi.yaml's default) means: generate one.
        vrrp_password=config.get_secret("vrrpPassword") if raw_password else None,
    )
