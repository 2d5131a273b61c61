"""The Pulumi program under mocks: the resource graph, roles, user-data, outputs, secrets."""

from __future__ import annotations

import re

import pytest

from lab.local_cloud import Deployment, Recorded
from tests.stacks import TOKEN, deploy_with, user_data_by_node, write_files

NODE_COUNTS = [2, 3]


def _one(deployment: Deployment, kind: str) -> Recorded:
    (found,) = deployment.cloud.of_type(kind)
    return found


def _keepalived_conf(user_data: str) -> str:
    return str(write_files(user_data)["/etc/keepalived/keepalived.conf"]["content"])


def _setting(conf: str, key: str) -> str:
    match = re.search(rf"^\s*{key} (\S+)", conf, re.MULTILINE)
    assert match, f"{key} missing from keepalived.conf"
    return match.group(1)


@pytest.mark.parametrize("node_count", NODE_COUNTS)
def test_droplets_live_in_the_vpc_with_the_cluster_tag(node_count: int) -> None:
    deployment = deploy_with(nodeCount=node_count)
    vpc = _one(deployment, "Vpc")
    tag = _one(deployment, "Tag")
    droplets = list(deployment.droplets())
    assert len(droplets) == node_count
    for droplet in droplets:
        assert droplet.inputs["vpcUuid"] == vpc.id
        assert droplet.inputs["tags"] == [tag.id]
        assert droplet.inputs["region"] == vpc.inputs["region"] == "nyc3"
        assert droplet.inputs["monitoring"] is True
        assert droplet.inputs["image"] == "ubuntu-24-04-x64"


@pytest.mark.parametrize("node_count", NODE_COUNTS)
def test_one_reserved_ip_created_unassigned_and_never_assigned_by_pulumi(node_count: int) -> None:
    deployment = deploy_with(nodeCount=node_count)
    reserved = _one(deployment, "ReservedIp")
    assert "dropletId" not in reserved.inputs
    assert reserved.ignore_changes == ("dropletId",)
    kinds = {r.typ for r in deployment.cloud.resources}
    assert not any("Assignment" in kind for kind in kinds), kinds


@pytest.mark.parametrize("node_count", NODE_COUNTS)
def test_every_child_is_parented_to_the_component(node_count: int) -> None:
    deployment = deploy_with(nodeCount=node_count)
    component = next(r for r in deployment.cloud.resources if r.typ == "ha-web:index:HaWebCluster")
    children = [r for r in deployment.cloud.resources if r is not component]
    assert children
    for child in children:
        assert child.parent_urn.endswith("ha-web:index:HaWebCluster::ha-web"), child.name


@pytest.mark.parametrize("node_count", NODE_COUNTS)
def test_project_groups_the_droplets_and_the_reserved_ip(node_count: int) -> None:
    deployment = deploy_with(nodeCount=node_count)
    project = _one(deployment, "Project")
    expected = [d.outputs["dropletUrn"] for d in deployment.droplets()]
    expected.append(_one(deployment, "ReservedIp").outputs["reservedIpUrn"])
    assert sorted(project.inputs["resources"]) == sorted(expected)


@pytest.mark.parametrize("node_count", NODE_COUNTS)
def test_exactly_one_master_and_distinct_decreasing_priorities(node_count: int) -> None:
    deployment = deploy_with(nodeCount=node_count)
    confs = {name: _keepalived_conf(ud) for name, ud in user_data_by_node(deployment).items()}
    states = {name: _setting(conf, "state") for name, conf in confs.items()}
    priorities = [int(_setting(confs[f"ha-web-dev-{i}"], "priority")) for i in range(node_count)]
    assert states.pop("ha-web-dev-0") == "MASTER"
    assert set(states.values()) == {"BACKUP"}
    assert priorities == sorted(set(priorities), reverse=True)


def test_failback_off_starts_every_node_backup_with_nopreempt() -> None:
    deployment = deploy_with(failback=False)
    for conf in map(_keepalived_conf, user_data_by_node(deployment).values()):
        assert _setting(conf, "state") == "BACKUP"
        assert re.search(r"^\s*nopreempt\b", conf, re.MULTILINE)


def test_failback_on_never_renders_nopreempt() -> None:
    deployment = deploy_with()
    for conf in map(_keepalived_conf, user_data_by_node(deployment).values()):
        assert not re.search(r"^\s*nopreempt\b", conf, re.MULTILINE)


@pytest.mark.parametrize("node_count", NODE_COUNTS)
def test_each_node_gets_its_own_user_data_with_the_token_file(node_count: int) -> None:
    deployment = deploy_with(nodeCount=node_count)
    reserved_ip = _one(deployment, "ReservedIp").outputs["ipAddress"]
    for name, user_data in user_data_by_node(deployment).items():
        assert user_data.startswith("#cloud-config\n")
        files = write_files(user_data)
        token = files["/etc/ha-web/token"]
        assert token["content"].strip() == TOKEN
        assert (token["permissions"], token["owner"], token.get("defer")) == (
            "0600",
            "ha-web:ha-web",
            True,
        )
        assert f'"droplet_name": "{name}"' in files["/etc/ha-web/agent.json"]["content"]
        assert f'"reserved_ip": "{reserved_ip}"' in files["/etc/ha-web/agent.json"]["content"]
        assert f"router_id {name}" in files["/etc/keepalived/keepalived.conf"]["content"]
        assert name in files["/var/www/ha-web/index.html"]["content"]
        assert user_data.count(TOKEN) == 1, "the token must be written once, to its file"


def test_outputs_give_reserved_ip_url_and_every_node() -> None:
    deployment = deploy_with(nodeCount=3)
    reserved_ip = _one(deployment, "ReservedIp").outputs["ipAddress"]
    outputs = deployment.outputs
    assert outputs["reservedIp"] == reserved_ip
    assert outputs["url"] == f"http://{reserved_ip}/"
    by_name = {d.inputs["name"]: d for d in deployment.droplets()}
    assert [n["role"] for n in outputs["nodes"]] == ["Primary", "Secondary 1", "Secondary 2"]
    for node in outputs["nodes"]:
        droplet = by_name[node["name"]]
        assert node["publicIp"] == droplet.outputs["ipv4Address"]
        assert node["privateIp"] == droplet.outputs["ipv4AddressPrivate"]


def test_user_data_is_a_secret_and_no_output_leaks_the_token() -> None:
    deployment = deploy_with()
    for droplet in deployment.droplets():
        assert "userData" in droplet.secret_inputs
    assert TOKEN not in repr(deployment.outputs)


def test_vrrp2_generates_a_secret_password_of_letters_and_digits_when_none_is_set() -> None:
    deployment = deploy_with(vrrpVersion=2, advertInterval=1)
    password = _one(deployment, "RandomPassword")
    assert password.inputs["length"] == 8
    assert password.inputs["special"] is False
    assert all(password.inputs[kind] is True for kind in ("upper", "lower", "numeric"))
    for conf in map(_keepalived_conf, user_data_by_node(deployment).values()):
        assert "auth_type PASS" in conf
        assert f'auth_pass "{password.outputs["result"]}"' in conf


@pytest.mark.parametrize("password", ["#secret", "!x", "a b", "a}b{c", " x y ", "@x", "a'b"])
def test_a_vrrp_password_is_rendered_quoted_as_one_keepalived_string(password: str) -> None:
    deployment = deploy_with(vrrpVersion=2, advertInterval=1, vrrpPassword=password)
    for conf in map(_keepalived_conf, user_data_by_node(deployment).values()):
        (line,) = [line for line in conf.splitlines() if "auth_pass" in line]
        assert line.split('"')[1] == password


def test_vrrp3_renders_no_authentication_and_no_password_resource() -> None:
    deployment = deploy_with()
    assert deployment.cloud.of_type("RandomPassword") == []
    for conf in map(_keepalived_conf, user_data_by_node(deployment).values()):
        assert "authentication" not in conf
        assert "check_unicast_src" in conf
