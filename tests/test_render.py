"""What the renderer writes onto a droplet, checked as text (fast; no tools needed)."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudinit import agent_archive, droplet_files, paths
from tests.stacks import deploy_with, user_data_by_node, write_files
from tests.unit_file import exec_line, parse


def _primary(**settings: Any) -> str:
    deployment = deploy_with(**settings)
    return user_data_by_node(deployment)["ha-web-dev-0"]


def test_keepalived_conf_runs_checks_unprivileged_and_notifies_the_agent_as_its_user() -> None:
    conf = write_files(_primary())[paths.KEEPALIVED_CONF]["content"]
    assert "enable_script_security" in conf
    assert f"script_user {paths.SCRIPT_USER}" in conf
    assert f'notify "{paths.AGENT} notify" {paths.AGENT_USER}' in conf
    assert f"include {paths.PEERS_CONF}" in conf
    assert re.search(r"track_file ha_web_hold \{\s+file \"/run/ha-web/hold\"", conf)
    assert "init_file 1" in conf
    assert "interface eth1" in conf
    assert "no_virtual_ipaddress" in conf


def test_health_and_vrrp_timings_come_from_settings_without_trailing_zeros() -> None:
    files = write_files(
        _primary(
            healthInterval="2",
            healthTimeout="1.5",
            healthFall=4,
            healthRise=5,
            advertInterval="0.25",
        )
    )
    conf = files[paths.KEEPALIVED_CONF]["content"]
    for line in ("interval 2\n", "timeout 1.5\n", "fall 4\n", "rise 5\n", "advert_int 0.25\n"):
        assert line in conf
    check = files[paths.CHECK_NGINX]["content"]
    assert "--max-time 1.5 http://127.0.0.1:80/healthz" in check


def test_health_check_is_http_not_pidof() -> None:
    files = write_files(_primary(healthPath="/status/ok"))
    check = files[paths.CHECK_NGINX]["content"]
    assert "http://127.0.0.1:80/status/ok" in check
    assert "pidof" not in check
    assert "location = /status/ok" in files[paths.NGINX_SITE]["content"]


def _unit(files: dict[str, dict[str, Any]], path: str) -> dict[str, dict[str, list[str]]]:
    return parse(files[path]["content"])


def _words(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> list[str]:
    return [word for line in unit.get(section, {}).get(key, []) for word in line.split()]


def test_firewall_allows_vrrp_only_from_peers_on_the_private_interface() -> None:
    closed = write_files(_primary())[paths.FIREWALL]["content"]
    rule = 'iifname "eth1" ip protocol 112 ip saddr @vrrp_peers accept'
    assert [line.strip() for line in closed.splitlines() if "112" in line] == [rule]


def test_firewall_allows_ssh_only_from_admin_cidrs() -> None:
    closed = write_files(_primary())[paths.FIREWALL]["content"]
    assert "policy drop" in closed
    assert "dport 22" not in closed, "no adminCidrs means SSH stays closed"
    opened = write_files(_primary(adminCidrs=["198.51.100.7/32", "2001:db8::/48"]))[paths.FIREWALL][
        "content"
    ]
    assert "elements = { 198.51.100.7/32 }" in opened
    assert "elements = { 2001:db8::/48 }" in opened
    assert "tcp dport 22 ip saddr @admin_v4 accept" in opened
    assert "tcp dport 22 ip6 saddr @admin_v6 accept" in opened


def test_overlapping_admin_cidrs_are_merged_before_they_reach_nft() -> None:
    cidrs = [
        "10.1.0.0/16",
        "10.0.0.0/8",
        "198.51.100.0/25",
        "198.51.100.128/25",
        "10.0.0.0/8",
        "2001:db8:1::/48",
        "2001:db8::/32",
    ]
    firewall = write_files(_primary(adminCidrs=cidrs))[paths.FIREWALL]["content"]
    assert "elements = { 10.0.0.0/8, 198.51.100.0/24 }" in firewall
    assert "elements = { 2001:db8::/32 }" in firewall


def test_metadata_is_locked_to_root_from_the_first_boot_and_then_to_root_and_the_agent() -> None:
    document = yaml.safe_load(_primary(metadataBaseUrl="http://192.0.2.254"))
    (bootcmd,) = document["bootcmd"]
    assert bootcmd[:3] == ["cloud-init-per", "once", "ha-web-metadata-lock"]
    assert bootcmd[-1].startswith("add table inet ha_web_metadata ")
    assert "ip daddr 192.0.2.254 meta skuid != 0 drop" in bootcmd[-1]
    files = {f["path"]: f for f in document["write_files"]}
    lock = files[paths.METADATA_LOCK]["content"]
    rules = [line.strip() for line in lock.splitlines() if "192.0.2.254" in line]
    assert rules == [
        "ip daddr 192.0.2.254 meta skuid 0 accept",
        'ip daddr 192.0.2.254 meta skuid "ha-web" accept',
        "ip daddr 192.0.2.254 drop",
    ]
    assert "delete table inet ha_web_metadata" in lock, "it replaces bootcmd's table"


def test_the_metadata_lock_does_not_depend_on_the_firewall() -> None:
    """A firewall.nft that fails to load must not leave the metadata address open."""
    files = write_files(_primary(metadataBaseUrl="http://192.0.2.254"))
    firewall = files[paths.FIREWALL]["content"]
    assert "192.0.2.254" not in firewall
    assert "ha_web_metadata" not in firewall, "reloading the firewall must not touch the lock"
    lock = _unit(files, "/etc/systemd/system/ha-web-metadata-lock.service")
    assert lock["Service"]["ExecStart"] == [f"/usr/sbin/nft -f {paths.METADATA_LOCK}"]
    assert lock["Service"]["RemainAfterExit"] == ["yes"]
    assert lock["Unit"]["DefaultDependencies"] == ["no"], "it loads before the network"
    assert "network-pre.target" in _words(lock, "Unit", "Before")
    assert "ha-web-firewall.service" in _words(lock, "Unit", "Before")
    for key in ("Requires", "BindsTo", "Requisite", "After", "PartOf"):
        assert "ha-web-firewall.service" not in _words(lock, "Unit", key), key
    assert lock["Install"]["WantedBy"] == ["multi-user.target"], "loaded on every boot"


FIREWALL_DEPENDENTS = [
    "/etc/systemd/system/keepalived.service.d/ha-web.conf",
    paths.NGINX_DROPIN,
    "/etc/systemd/system/ha-web-peers.service",
    "/etc/systemd/system/ha-web-reconcile.service",
]


@pytest.mark.parametrize("path", FIREWALL_DEPENDENTS)
def test_units_that_serve_or_claim_do_not_run_without_the_firewall(path: str) -> None:
    unit = _unit(write_files(_primary()), path)
    assert "ha-web-firewall.service" in _words(unit, "Unit", "Requires")
    assert "ha-web-firewall.service" in _words(unit, "Unit", "After"), (
        "without After=, a failed firewall does not stop the start"
    )


def test_the_firewall_reloads_in_place_without_restarting_what_requires_it() -> None:
    files = write_files(_primary())
    firewall = _unit(files, "/etc/systemd/system/ha-web-firewall.service")
    command = f"/usr/sbin/nft -f {paths.FIREWALL}"
    assert firewall["Service"]["ExecStart"] == [command]
    assert firewall["Service"]["ExecReload"] == [command]


def test_boot_locks_metadata_then_loads_the_firewall_before_keepalived_and_the_agent() -> None:
    runcmd = yaml.safe_load(_primary())["runcmd"]
    flat = [" ".join(c) for c in runcmd]
    lock = flat.index("systemctl enable --now ha-web-metadata-lock.service")
    firewall = flat.index("systemctl enable --now ha-web-firewall.service")
    build = next(i for i, c in enumerate(flat) if c.startswith(paths.BUILD_KEEPALIVED))
    agent = flat.index("systemctl enable --now ha-web-peers.timer ha-web-reconcile.timer")
    keepalived = flat.index("systemctl enable --now keepalived.service")
    assert lock < firewall < build < agent < keepalived


def test_tarball_build_is_pinned_to_version_url_and_checksum() -> None:
    document = yaml.safe_load(_primary())
    build = next(c for c in document["runcmd"] if c[0] == paths.BUILD_KEEPALIVED)
    assert build[1:] == [
        "https://www.keepalived.org/software/keepalived-2.3.4.tar.gz",
        "6afd95ddb7d3e0d3b8b8e5b3a489144131b61a01b06d29e883d0c44acc8a36bf",
        "2.3.4",
    ]
    assert {"build-essential", "libssl-dev", "libnl-genl-3-dev", "libsystemd-dev"} <= set(
        document["packages"]
    )


def test_package_source_installs_keepalived_and_builds_nothing() -> None:
    document = yaml.safe_load(
        _primary(
            keepalivedSource="package",
            vrrpVersion=2,
            advertInterval=1,
            healthInterval=1,
            healthTimeout=1,
        )
    )
    assert "keepalived" in document["packages"]
    assert "build-essential" not in document["packages"]
    assert not any(c[0] == paths.BUILD_KEEPALIVED for c in document["runcmd"])
    assert paths.BUILD_KEEPALIVED not in {f["path"] for f in document["write_files"]}


def test_agent_config_names_the_cluster_and_every_priority() -> None:
    files = write_files(_primary(nodeCount=3))
    config = json.loads(files[paths.AGENT_CONFIG]["content"])
    assert config["priorities"] == {"ha-web-dev-0": 200, "ha-web-dev-1": 190, "ha-web-dev-2": 180}
    assert config["cluster_tag"] == "ha-web-dev"
    assert config["token_file"] == paths.TOKEN
    assert config["settle_seconds"] >= 2.0
    assert files[paths.AGENT_CONFIG]["owner"] == "root:ha-web"
    assert files[paths.AGENT_CONFIG]["permissions"] == "0640"


def test_agent_units_run_as_the_agent_user_and_apply_peers_as_root() -> None:
    files = write_files(_primary())
    peers = files["/etc/systemd/system/ha-web-peers.service"]["content"]
    assert "User=ha-web" in peers
    assert f"ExecStart={paths.AGENT} peers" in peers
    assert f"ExecStartPost=+{paths.AGENT} apply-peers" in peers
    reconcile = files["/etc/systemd/system/ha-web-reconcile.service"]["content"]
    assert "User=ha-web" in reconcile
    timer = files["/etc/systemd/system/ha-web-reconcile.timer"]["content"]
    assert "OnUnitActiveSec=10s" in timer


def test_page_names_the_node_and_its_role() -> None:
    deployment = deploy_with(nodeCount=3)
    for name, user_data in user_data_by_node(deployment).items():
        page = write_files(user_data)[f"{paths.WEB_ROOT}/index.html"]["content"]
        role = "Primary" if name.endswith("-0") else f"Secondary {name[-1]}"
        assert f"<h1>{role}</h1>" in page
        assert f'content="{name}"' in page


def test_files_with_owners_created_by_cloud_init_are_deferred() -> None:
    for entry in write_files(_primary()).values():
        owner = entry["owner"]
        assert entry.get("defer", False) == (owner != "root:root"), entry["path"]


def test_nginx_drop_in_flips_keepalived_track_file_on_every_start_and_stop(
    tmp_path: Path,
) -> None:
    dropin = write_files(_primary())[paths.NGINX_DROPIN]
    sections = parse(dropin["content"])["Service"]
    assert set(sections) == {"ExecStartPost", "ExecStopPost"}, "a reload must not flip it"
    down = tmp_path / "nginx-down"
    for key, value in (("ExecStopPost", "1\n"), ("ExecStartPost", "0\n")):
        (line,) = sections[key]
        command = exec_line(line.replace(paths.NGINX_DOWN_FILE, str(down)))
        assert command.ignore_failure, "nginx must start even before the directory exists"
        assert not command.as_root
        subprocess.run(command.argv, check=True)
        assert down.read_text() == value
    assert dropin["owner"] == "root:root"


def test_keepalived_goes_fault_on_nginx_down_and_maintenance_track_files() -> None:
    conf = write_files(_primary())[paths.KEEPALIVED_CONF]["content"]
    for name, path in (
        ("ha_web_nginx_down", paths.NGINX_DOWN_FILE),
        ("ha_web_maintenance", paths.MAINTENANCE_FILE),
    ):
        block = re.search(rf"track_file {name} \{{(.*?)\}}", conf, re.S)
        assert block, name
        assert f'file "{path}"' in block[1]
        assert re.search(r"^\s*weight 0\b", block[1], re.M), "weight 0: non-zero means FAULT"
        assert "init_file" not in block[1], "tmpfiles makes the file; no file means 0"
    tracked = re.search(r"^    track_file \{(.*?)\}", conf, re.S | re.M)
    assert tracked
    assert tracked[1].split() == ["ha_web_hold", "ha_web_nginx_down", "ha_web_maintenance"]


def test_tmpfiles_makes_the_track_files_root_writes_in_a_directory_only_root_owns() -> None:
    content = write_files(_primary())[paths.TMPFILES]["content"]
    entries = {
        line.split()[1]: " ".join(line.split())
        for line in content.splitlines()
        if line and not line.startswith("#")
    }
    assert entries[paths.MAINTENANCE_FILE] == f"f {paths.MAINTENANCE_FILE} 0644 ha-web ha-web - 0"
    assert entries[paths.ROOT_STATE_DIR] == f"d {paths.ROOT_STATE_DIR} 0755 root root -"
    assert entries[paths.NGINX_DOWN_FILE] == f"f {paths.NGINX_DOWN_FILE} 0644 root root - 1"
    assert paths.NGINX_DOWN_FILE.startswith(paths.ROOT_STATE_DIR + "/")
    assert not paths.ROOT_STATE_DIR.startswith(paths.STATE_DIR + "/"), "ha-web owns STATE_DIR"


def test_boot_restarts_nginx_once_its_drop_in_and_track_file_directory_exist() -> None:
    flat = [" ".join(c) for c in yaml.safe_load(_primary())["runcmd"]]
    reload_units = flat.index("systemctl daemon-reload")
    tmpfiles = flat.index(f"systemd-tmpfiles --create {paths.TMPFILES}")
    nginx = flat.index("systemctl restart nginx.service")
    assert reload_units < nginx
    assert tmpfiles < nginx
    assert not any("reload" in c and "nginx" in c for c in flat), "a reload skips ExecStartPost"


def test_agent_launcher_imports_the_package_boot_unpacks_and_compiles_before_agents_run() -> None:
    document = yaml.safe_load(_primary())
    files = {f["path"]: f for f in document["write_files"]}
    launcher = files[paths.AGENT]["content"]
    assert launcher.startswith("#!/usr/bin/python3 -I\n")
    assert f'sys.path.append("{paths.LIB_DIR}")' in launcher
    assert "from ha_web_agent.cli import main" in launcher
    archive = files[paths.AGENT_ARCHIVE]
    assert archive["encoding"] == "gz+b64"
    zipped = gzip.decompress(base64.b64decode(archive["content"]))
    assert agent_archive.members(zipped) == agent_archive.sources()
    assert f"{paths.LIB_DIR}/{agent_archive.PACKAGE_NAME}" == paths.AGENT_MODULE
    flat = [" ".join(c) for c in document["runcmd"]]
    unpacked = flat.index(f"/usr/bin/python3 -m zipfile -e {paths.AGENT_ARCHIVE} {paths.LIB_DIR}")
    compiled = flat.index(f"/usr/bin/python3 -m compileall -q {paths.AGENT_MODULE}")
    agent_units = flat.index("systemctl enable --now ha-web-peers.timer ha-web-reconcile.timer")
    assert unpacked < compiled < agent_units


def test_a_stale_agent_archive_stops_the_render_with_the_command_that_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "agent"
    shutil.copytree(
        agent_archive.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    with (package / "errors.py").open("a") as module:
        module.write("# changed after the archive was built\n")
    monkeypatch.setattr(agent_archive, "PACKAGE_DIR", package)

    with pytest.raises(RuntimeError, match=r"changed: ha_web_agent/errors.py.*make agent"):
        droplet_files.packed_agent()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_user_data_fits_digitaloceans_64_kib_limit_at_the_largest_cluster(stack: str) -> None:
    deployment = deploy_with(
        stack,
        nodeCount=10,
        adminCidrs=["198.51.100.0/24", "2001:db8::/48"],
        sshKeys=["aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99"],
    )
    for name, user_data in user_data_by_node(deployment).items():
        assert len(user_data.encode()) <= 64 * 1024, name


def test_agent_config_names_the_maintenance_file() -> None:
    config = json.loads(write_files(_primary())[paths.AGENT_CONFIG]["content"])
    assert config["maintenance_file"] == paths.MAINTENANCE_FILE


def test_nginx_serves_the_agents_role_file_where_peers_probe_it() -> None:
    from cloudinit.agent import config as agent_config

    site = write_files(_primary())[paths.NGINX_SITE]["content"]
    location = re.search(r"location = (\S+) \{[^}]*alias ([^;]+);", site)
    assert location is not None, site
    assert location.groups() == (agent_config.ROLE_PATH, paths.ROLE_FILE)
    assert f"{paths.STATE_DIR}/role" == paths.ROLE_FILE, "the agent writes it to state_dir/role"


def test_a_stopped_or_killed_keepalived_records_stop_as_the_agent_user() -> None:
    unit = _unit(write_files(_primary()), "/etc/systemd/system/keepalived.service.d/ha-web.conf")
    (line,) = unit["Service"]["ExecStopPost"]
    command = exec_line(line)
    assert command.ignore_failure
    assert list(command.argv[-2:]) == [paths.AGENT, "keepalived-stopped"]
    assert f"--reuid={paths.AGENT_USER}" in command.argv
