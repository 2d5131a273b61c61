"""Every invalid setting fails before any resource exists, with a message that
names the key, the bad value and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components.settings import DEFAULTS
from components.settings_reader import SettingsError
from lab.local_cloud import REPO, LocalCloud, deploy
from tests.stacks import MINIMAL, deploy_with


def _problems(**settings: Any) -> tuple[list[str], LocalCloud]:
    cloud = LocalCloud()
    config = dict(MINIMAL)
    config.update(
        {f"ha-web:{k}": v if isinstance(v, str) else repr(v) for k, v in settings.items()}
    )
    config = {k: v.replace("'", '"') for k, v in config.items()}
    with pytest.raises(SettingsError) as raised:
        deploy("dev", config, cloud)
    return raised.value.problems, cloud


BAD_SETTINGS = [
    ("region", "New York", ["ha-web:region", "'New York'", "region slug"]),
    ("dropletSize", "huge", ["ha-web:dropletSize", "'huge'", "size slug"]),
    ("image", "Ubuntu 24", ["ha-web:image", "image slug"]),
    ("nodeCount", "1", ["ha-web:nodeCount", "1", "from 2 to 10"]),
    ("nodeCount", "11", ["ha-web:nodeCount", "11", "from 2 to 10"]),
    ("nodeCount", "two", ["ha-web:nodeCount", "'two'", "whole number"]),
    ("vpcIpRange", "8.8.0.0/16", ["ha-web:vpcIpRange", "private (RFC 1918)"]),
    ("vpcIpRange", "10.0.0.0/8", ["ha-web:vpcIpRange", "/16 to /24"]),
    ("vpcIpRange", "10.0.0.1/24", ["ha-web:vpcIpRange", "IPv4 CIDR"]),
    ("adminCidrs", '["198.51.100.7/24"]', ["ha-web:adminCidrs", "198.51.100.7/24", "host bits"]),
    ("sshKeys", '["not-a-key"]', ["ha-web:sshKeys", "'not-a-key'", "fingerprint"]),
    ("keepalivedVersion", "2.2.8", ["ha-web:keepalivedVersion", "'2.2.8'", "2.3.0 or newer"]),
    ("keepalivedVersion", "latest", ["ha-web:keepalivedVersion", "'latest'", "release number"]),
    ("keepalivedVersion", "2.3.5", ["ha-web:keepalivedSha256 is not set", "2.3.5"]),
    ("keepalivedSha256", "abc", ["ha-web:keepalivedSha256", "'abc'", "64 lowercase hex"]),
    ("keepalivedUrl", "ftp://x/k.tgz", ["ha-web:keepalivedUrl", "https://"]),
    ("keepalivedSource", "git", ["ha-web:keepalivedSource", "'git'", "tarball or package"]),
    ("vrrpVersion", "4", ["ha-web:vrrpVersion", "4", "2 or 3"]),
    ("vrrpRouterId", "0", ["ha-web:vrrpRouterId", "0", "from 1 to 255"]),
    ("vrrpRouterId", "256", ["ha-web:vrrpRouterId", "256", "from 1 to 255"]),
    ("advertInterval", "0.005", ["ha-web:advertInterval", "0.005", "0.01 to 40.95"]),
    ("advertInterval", "soon", ["ha-web:advertInterval", "'soon'", "a number"]),
    ("priorities", "[200]", ["ha-web:priorities", "one priority per node (2)"]),
    ("priorities", "[200, 200]", ["ha-web:priorities", "strictly decreasing"]),
    ("priorities", "[100, 200]", ["ha-web:priorities", "strictly decreasing"]),
    ("priorities", "[255, 100]", ["ha-web:priorities", "255", "1 to 254"]),
    ("healthPath", "healthz", ["ha-web:healthPath", "'healthz'", "start with /"]),
    ("healthInterval", "0", ["ha-web:healthInterval", "from 0.1 to 60"]),
    ("healthTimeout", "2", ["ha-web:healthTimeout", "up to healthInterval"]),
    ("healthFall", "0", ["ha-web:healthFall", "from 1 to 20"]),
    ("healthRise", "99", ["ha-web:healthRise", "from 1 to 20"]),
    ("failback", "maybe", ["ha-web:failback", "'maybe'", "true or false"]),
    ("reconcileInterval", "1", ["ha-web:reconcileInterval", "from 5 to 3600"]),
    ("peersRefreshInterval", "0", ["ha-web:peersRefreshInterval", "from 5 to 3600"]),
    ("claimTimeout", "9999", ["ha-web:claimTimeout", "from 5 to 600"]),
    ("apiBaseUrl", "api.example", ["ha-web:apiBaseUrl", "http(s) URL"]),
    ("metadataBaseUrl", "http://metadata.local", ["ha-web:metadataBaseUrl", "IPv4 address"]),
]


@pytest.mark.parametrize(("key", "value", "expected"), BAD_SETTINGS)
def test_bad_setting_is_refused_with_a_message_naming_key_value_and_rule(
    key: str, value: str, expected: list[str]
) -> None:
    problems, cloud = _problems(**{key: value})
    assert len(problems) == 1, problems
    for fragment in expected:
        assert fragment in problems[0]
    assert cloud.resources == [], "nothing may be created when a setting is bad"


def test_every_problem_is_reported_in_one_run() -> None:
    problems, _ = _problems(nodeCount="1", region="x", vrrpRouterId="0")
    keys = sorted(p.split(" ")[0] for p in problems)
    assert keys == ["ha-web:nodeCount", "ha-web:region", "ha-web:vrrpRouterId"]


def test_missing_failover_token_says_how_to_set_it() -> None:
    cloud = LocalCloud()
    with pytest.raises(SettingsError) as raised:
        deploy("dev", {"ha-web:region": "nyc3"}, cloud)
    (problem,) = raised.value.problems
    assert "pulumi config set --secret ha-web:failoverToken" in problem
    assert "reserved_ip:update" in problem
    assert cloud.resources == []


def test_vrrp_password_longer_than_pass_auth_keeps_is_refused() -> None:
    problems, _ = _problems(vrrpVersion="2", advertInterval="1", vrrpPassword="much-too-long")
    assert len(problems) == 1
    assert "ha-web:vrrpPassword" in problems[0]
    assert "1 to 8" in problems[0]


def test_package_source_refuses_settings_the_distribution_keepalived_rejects() -> None:
    problems, _ = _problems(keepalivedSource="package")
    assert any("vrrpVersion" in p and "needs vrrpVersion 2" in p for p in problems)
    assert any("healthInterval" in p and "whole seconds" in p for p in problems)


def test_vrrp2_refuses_sub_second_adverts() -> None:
    problems, _ = _problems(vrrpVersion="2", advertInterval="0.5")
    assert problems == [
        "ha-web:advertInterval is 0.5; VRRPv2 needs whole seconds from 1 to 255; "
        "vrrpVersion 3 allows sub-second adverts"
    ]


def test_other_keepalived_versions_need_their_checksum_and_then_deploy() -> None:
    deployment = deploy_with(keepalivedVersion="2.4.3")
    assert len(list(deployment.droplets())) == 2


def test_pulumi_yaml_declares_every_setting_with_the_same_default() -> None:
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    declared = project["config"]
    assert set(declared) == {*DEFAULTS, "failoverToken", "vrrpPassword"}
    for key, default in DEFAULTS.items():
        entry = declared[key]
        assert entry["description"], key
        shipped = entry["default"]
        assert str(shipped) == str(default) or shipped == default, key
    assert declared["failoverToken"]["secret"] is True
    assert "default" not in declared["failoverToken"], "the token must be required"
