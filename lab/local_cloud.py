"""A Pulumi mock that behaves like a tiny DigitalOcean.

It hands out ids and addresses from lab ranges and records every resource,
droplets' `user_data` included, so that the unit tests and the lab deploy
exactly what `pulumi up` would.
"""

from __future__ import annotations

import ipaddress
import json
import runpy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import ROOT, get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

REPO = Path(__file__).resolve().parent.parent
PROJECT = "ha-web"


def _net(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


@dataclass
class LabAddresses:
    """Documentation and private ranges only: nothing here is routable outside the lab."""

    public: ipaddress.IPv4Network = field(default_factory=lambda: _net("198.51.100.0/24"))
    private: ipaddress.IPv4Network = field(default_factory=lambda: _net("10.77.0.0/24"))
    reserved: ipaddress.IPv4Network = field(default_factory=lambda: _net("203.0.113.0/24"))


@dataclass
class Recorded:
    typ: str
    name: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    secret_inputs: frozenset[str]
    """Input keys the program marked secret."""
    ignore_changes: tuple[str, ...] = ()
    parent_urn: str = ""


_SECRET_SIG = "4dabf18193072939515e22adb298388d"


def _reveal(value: Any) -> Any:
    """Mocks see secrets wrapped in Pulumi's secret envelope; the local cloud needs the value."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return _reveal(value["value"])
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


@dataclass
class LocalCloud(pulumi.runtime.Mocks):
    addresses: LabAddresses = field(default_factory=LabAddresses)
    resources: list[Recorded] = field(default_factory=list)
    _next_id: int = 1000

    def _take(self, network: ipaddress.IPv4Network, offset: int) -> str:
        return str(network.network_address + offset)

    def new_resource(
        self, args: pulumi.runtime.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        self._next_id += 1
        rid = str(self._next_id)
        outputs: dict[str, Any] = dict(args.inputs)
        kind = args.typ.split(":")[-1]
        count = sum(1 for r in self.resources if r.typ == args.typ)
        if kind == "Droplet":
            outputs |= {
                "ipv4Address": self._take(self.addresses.public, 10 + count),
                "ipv4AddressPrivate": self._take(self.addresses.private, 10 + count),
                "dropletUrn": f"do:droplet:{rid}",
                "status": "active",
            }
        elif kind == "ReservedIp":
            outputs |= {
                "ipAddress": self._take(self.addresses.reserved, 10 + count),
                "reservedIpUrn": f"do:reservedip:{rid}",
            }
        elif kind == "Vpc":
            outputs |= {
                "ipRange": args.inputs.get("ipRange") or str(self.addresses.private),
                "urn": f"do:vpc:{rid}",
            }
        elif kind == "Tag":
            rid = str(args.inputs["name"])
        elif kind == "RandomPassword":
            outputs["result"] = "labpass1"
        secret = frozenset(k for k, v in args.inputs.items() if _reveal(v) is not v)
        self.resources.append(
            Recorded(args.typ, args.name, rid, _reveal(dict(args.inputs)), _reveal(outputs), secret)
        )
        return rid, outputs

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None

    def of_type(self, kind: str) -> list[Recorded]:
        return [r for r in self.resources if r.typ.split(":")[-1] == kind]


class _RecordingMonitor(MockMonitor):
    """Also records resource options that `Mocks.new_resource` does not see."""

    def __init__(self, cloud: LocalCloud) -> None:
        super().__init__(cloud)
        self.cloud = cloud

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        for recorded in reversed(self.cloud.resources):
            if recorded.name == request.name and recorded.typ == request.type:
                recorded.ignore_changes = tuple(request.ignoreChanges)
                recorded.parent_urn = request.parent
                break
        return response


@dataclass
class Deployment:
    cloud: LocalCloud
    outputs: dict[str, Any]

    def droplets(self) -> Iterator[Recorded]:
        return iter(self.cloud.of_type("Droplet"))


def stack_config(stack: str) -> dict[str, str]:
    """A stack file's `ha-web:` settings, as the CLI would hand them to the program."""
    path = REPO / f"Pulumi.{stack}.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    config = (raw or {}).get("config", {}) or {}
    return {key: v if isinstance(v, str) else json.dumps(v) for key, v in config.items()}


SECRET_KEYS = ["ha-web:failoverToken", "ha-web:vrrpPassword", "digitalocean:token"]


def deploy(stack: str, config: dict[str, str], cloud: LocalCloud | None = None) -> Deployment:
    """Run `__main__.py` for `stack` against the local cloud; return what it created and exported.

    Secret outputs come back unwrapped: the caller is the local cloud itself.
    """
    cloud = cloud or LocalCloud()
    pulumi.runtime.set_all_config(config, secret_keys=SECRET_KEYS)
    ROOT.set(None)
    pulumi.runtime.set_mocks(
        cloud, project=PROJECT, stack=stack, preview=False, monitor=_RecordingMonitor(cloud)
    )
    exports: dict[str, Any] = {}

    def program() -> None:
        runpy.run_path(str(REPO / "__main__.py"), run_name="__main__")
        root = get_root_resource()
        outputs = getattr(root, "outputs", {})
        resolved = _sync_await(pulumi.Output.from_input(outputs).future())
        exports.update(resolved or {})

    _sync_await(run_pulumi_func(program))
    return Deployment(cloud, exports)
