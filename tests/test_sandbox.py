"""Droplet sandboxes: a droplet's interfaces, its files over the real paths, and no traces."""

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.sandbox import (
    Interface,
    Overlay,
    SandboxError,
    add_system_users,
    droplet_network,
    network_namespace,
    overlay_root,
    run_in_sandbox,
    sandbox,
)

KEEPALIVED_CONF = """\
global_defs {
    router_id ha-web-test-0
    enable_script_security
    script_user keepalived_script
    vrrp_version 3
}

vrrp_script chk_nginx {
    script "/usr/local/lib/ha-web/check-nginx"
    interval 0.5
    timeout 0.4
    fall 2
    rise 2
}

track_file ha_web_hold {
    file "/run/ha-web/hold"
    weight 0
    init_file 1
}

vrrp_instance ha_web {
    state MASTER
    interface eth1
    virtual_router_id 51
    priority 200
    advert_int 0.3
    check_unicast_src
    no_virtual_ipaddress
    include /etc/keepalived/ha-web-peers.conf
    track_script {
        chk_nginx
    }
    track_file {
        ha_web_hold
    }
    notify "/usr/local/bin/ha-web-agent notify" ha-web
}
"""


@pytest.fixture
def prefix() -> str:
    """A short name prefix no other test (or run) uses; interface names allow 15 characters."""
    return "hws" + uuid.uuid4().hex[:6]


@contextmanager
def _droplet(prefix: str) -> Iterator[str]:
    with network_namespace(f"{prefix}-peer") as peer:
        interfaces = [
            Interface("eth0", "198.51.100.11/24", f"{prefix}-e0", "198.51.100.1/24"),
            Interface("eth1", "10.10.0.11/24", f"{prefix}-e1"),
        ]
        with droplet_network(f"{prefix}-d0", peer, interfaces) as namespace:
            yield namespace


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def test_overlays_sit_on_the_deepest_real_directory_that_exists(
    tmp_path: Path, prefix: str
) -> None:
    _write(tmp_path / "etc" / prefix / "a.conf", "a")
    _write(tmp_path / "etc" / "passwd", "root:x:0:0::/root:/bin/sh\n")
    _write(tmp_path / "usr" / "local" / "bin" / prefix, "#!/bin/sh\n", 0o755)

    assert overlay_root(tmp_path) == [
        Overlay(Path("/etc"), tmp_path / "etc"),
        Overlay(Path("/usr/local/bin"), tmp_path / "usr" / "local" / "bin"),
    ]


def test_staging_entries_without_a_real_top_level_directory_are_refused(
    tmp_path: Path, prefix: str
) -> None:
    _write(tmp_path / prefix / "file", "x")

    with pytest.raises(SandboxError, match=prefix):
        overlay_root(tmp_path)


@pytest.mark.lab
def test_staged_file_shows_at_its_real_path_inside_the_sandbox_only(
    tmp_path: Path, prefix: str
) -> None:
    staging = tmp_path / "staging"
    _write(staging / "etc" / prefix / "greeting", "hello from staging\n")
    real = Path("/etc", prefix, "greeting")

    with _droplet(prefix) as namespace:
        result = run_in_sandbox(namespace, ["cat", str(real)], staging=staging)

    assert result.stdout == "hello from staging\n"
    assert not real.exists()


@pytest.mark.lab
def test_sandbox_has_the_droplets_interfaces_and_hostname(prefix: str) -> None:
    with _droplet(prefix) as namespace, sandbox(namespace, hostname=f"{prefix}-0") as box:
        addresses = box.run(["ip", "-o", "-4", "addr", "show"]).stdout
        hostname = box.run(["hostname"]).stdout.strip()

    assert " eth0 " in addresses and "198.51.100.11/24" in addresses
    assert " eth1 " in addresses and "10.10.0.11/24" in addresses
    assert hostname == f"{prefix}-0"


@pytest.mark.lab
def test_namespaces_and_veths_are_gone_after_a_failing_command(prefix: str) -> None:
    with _droplet(prefix) as namespace:
        result = run_in_sandbox(namespace, ["sh", "-c", "exit 3"])
        peer_links_while_up = _ip("-n", f"{prefix}-peer", "-o", "link")

    assert result.returncode == 3
    assert f"{prefix}-e0" in peer_links_while_up
    assert prefix not in _ip("netns", "list")
    assert prefix not in _ip("-o", "link")


@pytest.mark.lab
def test_everything_started_in_a_sandbox_dies_with_it_even_on_error(prefix: str) -> None:
    init_pid = 0
    with (
        pytest.raises(RuntimeError, match="boom"),
        _droplet(prefix) as namespace,
        sandbox(namespace) as box,
    ):
        init_pid = box.pid
        sleeper = subprocess.Popen(box.argv(["sleep", "300"]))
        raise RuntimeError("boom")

    assert sleeper.wait(timeout=5) != 0
    assert init_pid > 0
    assert not Path(f"/proc/{init_pid}").exists()
    assert prefix not in _ip("netns", "list")


@pytest.mark.lab
def test_keepalived_config_test_accepts_a_droplet_config_staged_with_its_users(
    tmp_path: Path, prefix: str, keepalived_binary: Path
) -> None:
    staging = tmp_path / "staging"
    _write(staging / "etc" / "keepalived" / "keepalived.conf", KEEPALIVED_CONF, 0o640)
    _write(
        staging / "etc" / "keepalived" / "ha-web-peers.conf",
        "unicast_src_ip 10.10.0.11\nunicast_peer {\n    10.10.0.12\n}\n",
    )
    _write(staging / "usr" / "local" / "bin" / "ha-web-agent", "#!/bin/sh\n", 0o755)
    _write(staging / "usr" / "local" / "lib" / "ha-web" / "check-nginx", "#!/bin/sh\n", 0o755)
    (staging / "run" / "ha-web").mkdir(parents=True)
    command = [str(keepalived_binary), "--config-test", "-f", "/etc/keepalived/keepalived.conf"]

    with _droplet(prefix) as namespace:
        without_users = run_in_sandbox(namespace, command, staging=staging)
        add_system_users(staging, ["ha-web", "keepalived_script"])
        with_users = run_in_sandbox(namespace, command, staging=staging)

    assert without_users.returncode == 5
    assert "Error setting global script uid/gid" in without_users.stderr
    assert (with_users.returncode, with_users.stderr) == (0, "")
    assert os.stat("/etc/passwd").st_size < (staging / "etc" / "passwd").stat().st_size
