"""Every rendered keepalived.conf passes keepalived 2.3.4's own checks, inside a network
namespace that has the droplet's interfaces and a mount namespace holding the droplet's
files at their real paths. The keepalived is the one the project's build script built
from Debian's copy of the pinned release tarball, not the host's package."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cloudinit import paths
from tests.rendered import example_user_data
from tests.sandbox import Interface, droplet_network, network_namespace, run_in_sandbox
from tests.stacks import deploy_with, edge_user_data, user_data_by_node
from tests.staging import create_users, parse, write_files

pytestmark = pytest.mark.lab


def _user_data() -> dict[str, str]:
    """The example stacks, and one at the edges of what the settings allow."""
    return {**example_user_data(), **edge_user_data()}


NODES = sorted(_user_data())
PEERS = "unicast_src_ip 10.77.0.10\nunicast_peer {\n    10.77.0.11\n}\n"
# keepalived's --config-test discards these run-time complaints; a short real run shows them.
RUNTIME_COMPLAINTS = ("ignoring", "disabling", "cannot be accessed", "SECURITY VIOLATION")
# Each is keepalived syntax when unquoted: a comment (# !), a word break, a block ({ }), a
# conditional line (@), a quote of another kind.
HOSTILE_PASSWORDS = ["#secret", "!x", "a b", "a}b{c", " x y ", "@x", "a'b", "Abc12345"]


def _stage(user_data: str, root: Path) -> Path:
    config = parse(user_data)
    create_users(config, root)
    write_files(config, root, deferred=False)
    write_files(config, root, deferred=True)
    # cloud-init decodes the agent's `encoding: b64` zip, which tests/staging.py writes as given,
    # and runcmd unpacks it next to itself.
    (packed,) = [e["content"] for e in config.write_files if e["path"] == paths.AGENT_ARCHIVE]
    archive = gzip.decompress(base64.b64decode(packed))
    (root / paths.AGENT_ARCHIVE.lstrip("/")).write_bytes(archive)
    zipfile.ZipFile(io.BytesIO(archive)).extractall(root / paths.LIB_DIR.lstrip("/"))
    # What systemd-tmpfiles makes from the droplet's tmpfiles.d entry.
    state_dir = root / paths.STATE_DIR.lstrip("/")
    state_dir.mkdir(parents=True)
    passwd = (root / "etc/passwd").read_text().splitlines()
    agent = next(line for line in passwd if line.startswith(f"{paths.AGENT_USER}:")).split(":")
    os.chown(state_dir, int(agent[2]), int(agent[3]))
    # ... and its track files: maintenance off, nginx up (its drop-in's ExecStartPost wrote 0).
    maintenance = root / paths.MAINTENANCE_FILE.lstrip("/")
    maintenance.write_text("0")
    os.chown(maintenance, int(agent[2]), int(agent[3]))
    (root / paths.ROOT_STATE_DIR.lstrip("/")).mkdir()
    (root / paths.NGINX_DOWN_FILE.lstrip("/")).write_text("0\n")
    return root


@contextmanager
def _droplet_namespace() -> Iterator[str]:
    tag = uuid.uuid4().hex[:6]
    with (
        network_namespace(f"hwk-peer-{tag}") as peer,
        droplet_network(
            f"hwk-{tag}",
            peer,
            [
                Interface("eth0", "198.51.100.10/24", f"pub{tag}"),
                Interface("eth1", "10.77.0.10/24", f"prv{tag}"),
            ],
        ) as droplet,
    ):
        yield droplet


def _config_test(keepalived: Path, root: Path) -> subprocess.CompletedProcess[str]:
    with _droplet_namespace() as namespace:
        return run_in_sandbox(
            namespace, [str(keepalived), "--config-test", "-f", paths.KEEPALIVED_CONF], root
        )


@pytest.mark.parametrize("node", NODES)
def test_config_passes_before_the_peers_are_known(
    node: str, keepalived_binary: Path, tmp_path: Path
) -> None:
    root = _stage(_user_data()[node], tmp_path / "root")
    result = _config_test(keepalived_binary, root)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("node", NODES)
def test_config_passes_with_the_peers_file_the_agent_writes(
    node: str, keepalived_binary: Path, tmp_path: Path
) -> None:
    root = _stage(_user_data()[node], tmp_path / "root")
    (root / paths.PEERS_CONF.lstrip("/")).write_text(PEERS)
    result = _config_test(keepalived_binary, root)
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_test_catches_a_broken_config(keepalived_binary: Path, tmp_path: Path) -> None:
    root = _stage(example_user_data()[NODES[0]], tmp_path / "root")
    conf = root / paths.KEEPALIVED_CONF.lstrip("/")
    conf.write_text(conf.read_text().replace("no_virtual_ipaddress", ""))
    assert _config_test(keepalived_binary, root).returncode != 0


@pytest.mark.parametrize("node", [n for n in NODES if n.startswith("dev/")])
def test_keepalived_runs_the_config_and_notifies_the_agent_as_its_user(
    node: str, keepalived_binary: Path, tmp_path: Path
) -> None:
    root = _stage(_user_data()[node], tmp_path / "root")
    (root / paths.PEERS_CONF.lstrip("/")).write_text(PEERS)
    run = f"timeout 3 {keepalived_binary} -n -l -D -f {paths.KEEPALIVED_CONF}"
    show_state = f"stat -c %U {paths.STATE_DIR}/state.json; cat {paths.STATE_DIR}/state.json"
    with _droplet_namespace() as namespace:
        result = run_in_sandbox(namespace, ["sh", "-c", f"{run}; {show_state}"], root)
    log = result.stdout + result.stderr
    assert "Startup complete" in log, log
    for complaint in RUNTIME_COMPLAINTS:
        assert complaint not in log, log
    # Held (no peers confirmed by the agent yet), the node is FAULT, and keepalived told the
    # agent so by running it as the agent's user; the timeout's SIGTERM then says STOP.
    assert "tracked file ha_web_hold" in log
    owner, state = result.stdout.split("\n", 1)
    assert owner == paths.AGENT_USER
    recorded = json.loads(state)
    assert (recorded["previous"], recorded["state"]) == ("FAULT", "STOP"), recorded


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_keepalived_reads_exactly_the_vrrp_password_that_was_set(
    password: str, keepalived_binary: Path, tmp_path: Path
) -> None:
    deployment = deploy_with(vrrpVersion=2, advertInterval=1, vrrpPassword=password)
    root = _stage(user_data_by_node(deployment)["ha-web-dev-0"], tmp_path / "root")
    (root / paths.PEERS_CONF.lstrip("/")).write_text(PEERS)
    checked = _config_test(keepalived_binary, root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # -d dumps the configuration keepalived parsed, password included.
    run = f"timeout 2 {keepalived_binary} -n -l -D -d -f {paths.KEEPALIVED_CONF}"
    with _droplet_namespace() as namespace:
        result = run_in_sandbox(namespace, ["sh", "-c", run], root)
    log = result.stdout + result.stderr
    marker = "   Password = "
    read = [line.split(marker, 1)[1] for line in log.splitlines() if marker in line]
    assert read == [password], log
