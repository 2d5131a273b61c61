"""Fixtures shared across test modules."""

from collections.abc import Iterator

import pytest

from tests.agent_harness import Cloud, HealthServer, health_servers, running_cloud
from tests.keepalived_fixture import keepalived_binary

__all__ = ["cloud", "health", "keepalived_binary"]

LOOPBACK_PEERS = ("127.0.0.2", "127.0.0.3")
"""Private IPs for the two emulated droplets that their health servers can listen on."""


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    """The emulated API with two tagged droplets and the reserved IP (agent tests)."""
    with running_cloud(private_ips=LOOPBACK_PEERS) as running:
        yield running


@pytest.fixture
def health() -> Iterator[list[HealthServer]]:
    """A health URL per droplet of `cloud`, each answering 2xx until told otherwise."""
    with health_servers(LOOPBACK_PEERS) as servers:
        yield servers
