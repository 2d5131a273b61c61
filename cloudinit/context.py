"""Everything the templates print, computed in Python from a droplet's inputs."""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from cloudinit import paths
from cloudinit.inputs import DropletInputs
from cloudinit.timing import settle_seconds
from components.settings import Settings

PRIVATE_INTERFACE = "eth1"
HTTP_PORT = 80


SETPRIV = "/usr/bin/setpriv"
"""util-linux, in every Ubuntu image: runs one unit command as another user."""


def _number(value: float) -> str:
    """keepalived and curl want 0.5 or 2, never 2.0."""
    return f"{value:g}"


def _admin_networks(cidrs: tuple[str, ...]) -> tuple[str, str]:
    """(IPv4, IPv6) elements of the SSH sets. nft refuses a set whose intervals overlap
    ("conflicting intervals"), so 10.0.0.0/8 and 10.1.0.0/16 are merged into one first."""
    nets = [ipaddress.ip_network(c) for c in cidrs]
    v4 = ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv4Network))
    v6 = ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv6Network))
    return ", ".join(map(str, v4)), ", ".join(map(str, v6))


def metadata_ip(settings: Settings) -> str:
    """The address the metadata lock names, as `ipaddress` prints it (the rules made it IPv4)."""
    return str(ipaddress.IPv4Address(urlsplit(settings.metadata_base_url).hostname or ""))


def template_context(inputs: DropletInputs) -> dict[str, object]:
    s, node = inputs.settings, inputs.node
    health = s.health
    admin_v4, admin_v6 = _admin_networks(s.admin_cidrs)
    return {
        "node_name": node.name,
        "role": node.role,
        "cluster_tag": s.cluster_tag,
        "state": node.state,
        "priority": node.priority,
        "private_interface": PRIVATE_INTERFACE,
        "router_id": s.vrrp.router_id,
        "vrrp_version": s.vrrp.version,
        "advert_interval": _number(s.vrrp.advert_interval),
        "nopreempt": not s.vrrp.failback,
        "auth_pass": inputs.vrrp_password if s.vrrp.version == 2 else None,
        "health_interval": _number(health.interval),
        "health_timeout": _number(health.timeout),
        "health_fall": health.fall,
        "health_rise": health.rise,
        "health_path": health.path,
        "health_url": f"http://127.0.0.1:{HTTP_PORT}{health.path}",
        "admin_v4": admin_v4,
        "admin_v6": admin_v6,
        "metadata_ip": metadata_ip(s),
        "peers_refresh_interval": s.agent.peers_refresh_interval,
        "reconcile_interval": s.agent.reconcile_interval,
        "agent": paths.AGENT,
        "agent_user": paths.AGENT_USER,
        "script_user": paths.SCRIPT_USER,
        "check_nginx": paths.CHECK_NGINX,
        "hold_file": paths.HOLD_FILE,
        "maintenance_file": paths.MAINTENANCE_FILE,
        "nginx_down_file": paths.NGINX_DOWN_FILE,
        "lib_dir": paths.LIB_DIR,
        "agent_module": paths.AGENT_MODULE,
        "peers_conf": paths.PEERS_CONF,
        "data_dir": paths.DATA_DIR,
        "state_dir": paths.STATE_DIR,
        "web_root": paths.WEB_ROOT,
        "role_file": paths.ROLE_FILE,
        "role_path": paths.ROLE_PATH,
        "setpriv": SETPRIV,
    }


def agent_config(inputs: DropletInputs) -> str:
    """The agent's settings file (docs/internals.md). It holds no secret."""
    s = inputs.settings
    config = {
        "api_base_url": s.api_base_url,
        "metadata_base_url": s.metadata_base_url,
        "reserved_ip": inputs.reserved_ip,
        "cluster_tag": s.cluster_tag,
        "droplet_name": inputs.node.name,
        "priorities": {n.name: n.priority for n in inputs.nodes},
        "token_file": paths.TOKEN,
        "state_dir": paths.STATE_DIR,
        "data_dir": paths.DATA_DIR,
        "peers_conf": paths.PEERS_CONF,
        "hold_file": paths.HOLD_FILE,
        "maintenance_file": paths.MAINTENANCE_FILE,
        "keepalived_pid_file": paths.KEEPALIVED_PID,
        "nft_table": "ha_web",
        "health_port": HTTP_PORT,
        "health_path": s.health.path,
        "claim_timeout": float(s.agent.claim_timeout),
        "settle_seconds": settle_seconds(s.vrrp),
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
