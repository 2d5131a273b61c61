"""A replaced droplet (new id, new private IP) is found by the survivor's peers refresh."""

from __future__ import annotations

import json

import pytest

from lab import scenarios
from tests.lab_fixtures import MakeLab, journals, make_lab

pytestmark = pytest.mark.lab
__all__ = ["make_lab"]
NEW_PRIVATE = "10.77.0.20"
NEW_PUBLIC = "198.51.100.20"


def test_survivor_picks_up_the_replacement_and_fails_over_again(make_lab: MakeLab) -> None:
    lab = make_lab()
    scenarios.ensure_steady(lab)
    survivor = lab.droplets[lab.spec.primary]
    lab.replace(lab.spec.backup, NEW_PRIVATE, NEW_PUBLIC)
    lab.boot([lab.spec.backup])

    def peers() -> list[str]:
        raw = json.loads(survivor.path("/var/lib/ha-web/peers.json").read_text())
        return [p["private_ip"] for p in raw["peers"]]

    conf = survivor.path("/etc/keepalived/ha-web-peers.conf")
    lab.wait_for(lambda: peers() == [NEW_PRIVATE], 20, "the survivor's peers refresh")
    lab.wait_for(lambda: NEW_PRIVATE in conf.read_text(), 5, "apply-peers to rewrite the include")
    result = scenarios.stop_nginx(lab)
    assert result.problems == [], journals(lab)
    assert result.holder == lab.spec.primary
