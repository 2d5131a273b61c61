"""Deploy a stack against the local cloud, the way the tests need it."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import yaml

from lab.local_cloud import Deployment, deploy, stack_config

TOKEN = "dop_v1_" + "5ec2e7" * 10 + "abcd"
"""A fake failover token, distinctive enough to grep for."""
MINIMAL = {"ha-web:failoverToken": TOKEN, "ha-web:region": "nyc3"}


def deploy_with(stack: str = "dev", **settings: Any) -> Deployment:
    """Deploy `stack` with only the contract keys plus `settings` (camelCase, no prefix)."""
    config = dict(MINIMAL)
    for key, value in settings.items():
        config[f"ha-web:{key}"] = value if isinstance(value, str) else json.dumps(value)
    return deploy(stack, config)


def deploy_example(stack: str) -> Deployment:
    """Deploy an example stack file as shipped, plus the secrets a user would set."""
    return deploy(stack, {**stack_config(stack), "ha-web:failoverToken": TOKEN})


EDGE_STACK = "Edge-2-" + "x" * 47
"""The longest stack name the settings allow: droplet names of 63 characters."""
EDGE_SETTINGS: dict[str, Any] = {
    "vrrpVersion": 2,
    "advertInterval": 1,
    # Every character keepalived's syntax reads specially outside quotes.
    "vrrpPassword": "#a}b{ !c",
    "healthPath": "/~ok/.well-known/a-b_c.d/",
    "adminCidrs": [
        "10.1.0.0/16",
        "10.0.0.0/8",
        "198.51.100.0/25",
        "198.51.100.128/25",
        "2001:db8:1::/48",
        "2001:db8::/32",
    ],
}
"""Settings at the edges of what the rules allow, which the real tools must still accept."""


@cache
def edge_user_data() -> dict[str, str]:
    """`{"edge/<droplet name>": user-data}` of a stack with `EDGE_SETTINGS`."""
    deployment = deploy_with(EDGE_STACK, **EDGE_SETTINGS)
    return {f"edge/{name}": ud for name, ud in user_data_by_node(deployment).items()}


def user_data_by_node(deployment: Deployment) -> dict[str, str]:
    return {d.inputs["name"]: d.inputs["userData"] for d in deployment.droplets()}


def write_files(user_data: str) -> dict[str, dict[str, Any]]:
    """The cloud-config's write_files, by path."""
    document = yaml.safe_load(user_data)
    return {entry["path"]: entry for entry in document["write_files"]}
