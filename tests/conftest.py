"""Fixtures shared across test modules."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_harness import Cloud, HealthServer, Node, health_servers, running_cloud
from tests.keepalived_fixture import keepalived_binary

__all__ = ["cloud", "health", "keepalived_binary", "node", "public"]

LOOPBACK_PEERS = ("127.0.0.2", "127.0.0.3")
"""Private IPs for the two emulated droplets that their health servers can listen on."""
LOOPBACK_PUBLIC = ("127.0.1.2", "127.0.1.3")
"""Their public IPs: another path to each node than the VPC, which a test may cut."""


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    """The emulated API with two tagged droplets and the reserved IP (agent tests)."""
    with running_cloud(private_ips=LOOPBACK_PEERS, public_ips=LOOPBACK_PUBLIC) as running:
        yield running


@pytest.fixture
def health() -> Iterator[list[HealthServer]]:
    """A health URL per droplet of `cloud`, each answering 2xx until told otherwise."""
    with health_servers(LOOPBACK_PEERS) as servers:
        yield servers


@pytest.fixture
def public(health: list[HealthServer]) -> Iterator[list[HealthServer]]:
    """Each droplet of `cloud` on its public address, on `health`'s port; says MASTER until
    told otherwise."""
    with health_servers(LOOPBACK_PUBLIC, port=health[0].port) as servers:
        yield servers


@pytest.fixture
def node(cloud: Cloud, tmp_path: Path) -> Node:
    """Droplet 0, a settled MASTER whose droplet id is cached."""
    primary = cloud.node(tmp_path)
    primary.cache_identity()
    primary.set_state("MASTER")
    return primary
