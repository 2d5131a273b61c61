"""Every invalid setting fails before any resource exists, with a message that
names the key, the bad value and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components.settings import DEFAULTS, KNOWN_KEEPALIVED_SHA256
from components.settings_reader import SettingsError
from lab.local_cloud import REPO, LocalCloud, deploy
from tests.stacks import MINIMAL, TOKEN, deploy_with, write_files


def _problems(stack: str = "dev", **settings: Any) -> tuple[list[str], LocalCloud]:
    cloud = LocalCloud()
    config = dict(MINIMAL)
    config.update(
        {f"ha-web:{k}": v if isinstance(v, str) else repr(v) for k, v in settings.items()}
    )
    config = {k: v.replace("'", '"') for k, v in config.items()}
    with pytest.raises(SettingsError) as raised:
        deploy(stack, config, cloud)
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
    ("vpcIpRange", "10.110.0.0/255.255.240.0", ["ha-web:vpcIpRange", "write it as 10.110.0.0/20"]),
    ("adminCidrs", '["198.51.100.7/24"]', ["ha-web:adminCidrs", "198.51.100.7/24", "host bits"]),
    ("sshKeys", '["not-a-key"]', ["ha-web:sshKeys", "'not-a-key'", "fingerprint"]),
    ("keepalivedVersion", "2.2.8", ["ha-web:keepalivedVersion", "'2.2.8'", "2.3.0 or newer"]),
    ("keepalivedVersion", "latest", ["ha-web:keepalivedVersion", "'latest'", "release number"]),
    ("keepalivedVersion", "2.3.5", ["ha-web:keepalivedSha256 is not set", "2.3.5"]),
    ("keepalivedSha256", "abc", ["ha-web:keepalivedSha256", "'abc'", "64 lowercase hex"]),
    ("keepalivedUrl", "ftp://x/k.tgz", ["ha-web:keepalivedUrl", "https://"]),
    ("keepalivedUrl", "https:///nohost", ["ha-web:keepalivedUrl", "'https:///nohost'", "host"]),
    ("keepalivedUrl", "https://example.com", ["ha-web:keepalivedUrl", "path"]),
    ("keepalivedUrl", "https://h.example/k 1.tgz", ["ha-web:keepalivedUrl", "spaces"]),
    ("keepalivedUrl", "https://h.example:0/k.tgz", ["ha-web:keepalivedUrl", "https://"]),
    ("keepalivedUrl", "http://h.example/k.tgz", ["ha-web:keepalivedUrl", "https://"]),
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
    ("healthPath", "/ok; return 500", ["ha-web:healthPath", "URL-safe characters"]),
    ("healthPath", "/ok{", ["ha-web:healthPath", "URL-safe characters"]),
    ("healthPath", "/$(reboot)", ["ha-web:healthPath", "URL-safe characters"]),
    ("healthInterval", "0", ["ha-web:healthInterval", "from 0.1 to 60"]),
    ("healthTimeout", "2", ["ha-web:healthTimeout", "up to healthInterval"]),
    ("healthFall", "0", ["ha-web:healthFall", "from 1 to 20"]),
    ("healthRise", "99", ["ha-web:healthRise", "from 1 to 20"]),
    ("failback", "maybe", ["ha-web:failback", "'maybe'", "true or false"]),
    ("reconcileInterval", "1", ["ha-web:reconcileInterval", "from 5 to 3600"]),
    ("peersRefreshInterval", "0", ["ha-web:peersRefreshInterval", "from 5 to 3600"]),
    ("claimTimeout", "9999", ["ha-web:claimTimeout", "from 5 to 600"]),
    ("apiBaseUrl", "api.example", ["ha-web:apiBaseUrl", "http(s) URL"]),
    ("apiBaseUrl", "https:///v2", ["ha-web:apiBaseUrl", "http(s) URL"]),
    ("apiBaseUrl", "https://api.example/v2", ["ha-web:apiBaseUrl", "no path"]),
    ("apiBaseUrl", "https://me@api.example", ["ha-web:apiBaseUrl", "no path, user"]),
    ("apiBaseUrl", "https://api.example?x=1", ["ha-web:apiBaseUrl", "query"]),
    ("apiBaseUrl", "https://[::g]", ["ha-web:apiBaseUrl", "http(s) URL"]),
    ("apiBaseUrl", "https://api.example:99999", ["ha-web:apiBaseUrl", "port"]),
    (
        "apiBaseUrl",
        "http://api.example",
        ["ha-web:apiBaseUrl", "must be https://", "pulumi config set ha-web:allowInsecureApi true"],
    ),
    ("allowInsecureApi", "sometimes", ["ha-web:allowInsecureApi", "true or false"]),
    ("metadataBaseUrl", "http://metadata.local", ["ha-web:metadataBaseUrl", "IPv4 address"]),
    ("metadataBaseUrl", "http://169.254.169.254/x", ["ha-web:metadataBaseUrl", "no path"]),
    ("adminCidrs", '["fe80::%eth0/64"]', ["ha-web:adminCidrs", "fe80::%eth0/64", "network"]),
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


# A valid value of every text setting, with "\n" appended: `$` in a regex matches before a
# final newline, so a `re.match(...$)` rule let these through to the droplets.
TRAILING_NEWLINE = [
    ("region", "nyc3\n"),
    ("dropletSize", "s-1vcpu-1gb\n"),
    ("image", "ubuntu-24-04-x64\n"),
    ("image", "12345678\n"),
    ("sshKeys", '["12345\\n"]'),
    ("sshKeys", '["aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99\\n"]'),
    ("adminCidrs", '["198.51.100.0/24\\n"]'),
    ("vpcIpRange", "10.110.0.0/20\n"),
    ("keepalivedVersion", "2.3.4\n"),
    ("keepalivedSha256", KNOWN_KEEPALIVED_SHA256["2.3.4"] + "\n"),
    ("keepalivedUrl", "https://www.keepalived.org/software/keepalived-2.3.4.tar.gz\n"),
    ("keepalivedSource", "tarball\n"),
    ("healthPath", "/healthz\n"),
    ("apiBaseUrl", "https://api.digitalocean.com\n"),
    ("metadataBaseUrl", "http://169.254.169.254\n"),
]


@pytest.mark.parametrize(("key", "value"), TRAILING_NEWLINE)
def test_a_trailing_newline_is_refused_in_every_text_setting(key: str, value: str) -> None:
    problems, cloud = _problems(**{key: value})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"ha-web:{key} is "), problems
    assert "\\n" in problems[0], "the message shows the newline"
    assert cloud.resources == []


def test_text_settings_without_the_newline_deploy() -> None:
    """The other half of the test above: each value is refused only for its newline."""
    settings: dict[str, Any] = {}
    for key, value in TRAILING_NEWLINE:
        settings[key] = value.replace("\\n", "").replace("\n", "")
    settings["sshKeys"] = '["12345", "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"]'
    settings["image"] = "12345678"
    assert len(list(deploy_with(**settings).droplets())) == 2


def test_a_keepalived_version_with_a_newline_is_named_as_the_bad_key() -> None:
    problems, _ = _problems(keepalivedVersion="2.3.4\n")
    assert len(problems) == 1, problems
    assert problems[0].startswith("ha-web:keepalivedVersion is '2.3.4\\n'")
    assert "keepalivedSha256" not in problems[0]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:18777", "http://[::1]:8080/", "http://localhost:8080"]
)
def test_plain_http_api_is_accepted_on_loopback(url: str) -> None:
    deployment = deploy_with(apiBaseUrl=url)
    agent = write_files(next(deployment.droplets()).inputs["userData"])["/etc/ha-web/agent.json"]
    assert f'"api_base_url": "{url}"' in agent["content"]


def test_plain_http_api_elsewhere_needs_the_explicit_opt_out() -> None:
    deployment = deploy_with(apiBaseUrl="http://192.0.2.10", allowInsecureApi=True)
    assert len(list(deployment.droplets())) == 2


@pytest.mark.parametrize(
    "stack", ["prod_eu", "prod.eu", "-prod", "prod-", "Ünï", "x" * 55, "dev\n"]
)
def test_a_stack_name_that_cannot_name_droplets_and_tags_is_refused(stack: str) -> None:
    problems, cloud = _problems(stack)
    assert len(problems) == 1, problems
    assert f"the stack name {stack!r}" in problems[0]
    assert "letters, digits and inner hyphens" in problems[0]
    assert cloud.resources == []


def test_the_longest_stack_name_makes_droplet_names_of_one_dns_label() -> None:
    stack = "a" * 54
    deployment = deploy("a" * 54, dict(MINIMAL))
    names = [d.inputs["name"] for d in deployment.droplets()]
    assert names == [f"ha-web-{stack}-0", f"ha-web-{stack}-1"]
    assert all(len(name) <= 63 for name in names)


@pytest.mark.parametrize(
    "token",
    [
        TOKEN + "\n",
        TOKEN + " ",
        " " + TOKEN,
        TOKEN[:20] + " " + TOKEN[20:],
        TOKEN[:20] + "\t" + TOKEN[20:],
        TOKEN[:20] + "\x00" + TOKEN[20:],
        TOKEN + "\r\nX-Evil: 1",
        "Bearer " + TOKEN,
        TOKEN[:20] + "é" + TOKEN[20:],
        "==" + TOKEN,
    ],
)
def test_a_failover_token_that_is_no_bearer_token_is_refused_without_printing_it(
    token: str,
) -> None:
    problems, cloud = _problems(failoverToken=token)
    assert len(problems) == 1, problems
    assert problems[0].startswith("ha-web:failoverToken (not shown: it is a secret)")
    assert "pulumi config set --secret ha-web:failoverToken" in problems[0]
    assert TOKEN[7:20] not in problems[0]
    assert cloud.resources == []


@pytest.mark.parametrize(
    "token",
    [TOKEN, "dop_v1_" + "0" * 64, "doo_v1_" + "a" * 64, "f" * 64, "abc.DEF-ghi_jkl~+/=="],
)
def test_bearer_tokens_of_every_digitalocean_kind_are_accepted(token: str) -> None:
    deployment = deploy("dev", {**MINIMAL, "ha-web:failoverToken": token})
    files = write_files(next(deployment.droplets()).inputs["userData"])
    assert files["/etc/ha-web/token"]["content"] == token + "\n"


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


@pytest.mark.parametrize(
    "password",
    ['"x', 'a"b', "a\\b", "x\\", "$_HASH", "${_PWD}", "a\nb", "a\tb", "é", "abcdefg\u00e9"],
)
def test_a_vrrp_password_keepalived_cannot_read_literally_is_refused_without_printing_it(
    password: str,
) -> None:
    problems, cloud = _problems(vrrpVersion="2", advertInterval="1", vrrpPassword=password)
    assert len(problems) == 1, problems
    assert problems[0].startswith("ha-web:vrrpPassword (not shown: it is a secret)")
    assert 'other than ", $ and \\' in problems[0]
    assert password not in problems[0]
    assert cloud.resources == []


def test_an_empty_vrrp_password_means_generate_one() -> None:
    """Pulumi.yaml's default is the empty string; the CLI hands it to the program."""
    deployment = deploy_with(vrrpVersion=2, advertInterval=1, vrrpPassword="")
    assert len(deployment.cloud.of_type("RandomPassword")) == 1


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
