"""Every user-data the example stacks render, for tests that check it with real tools."""

from __future__ import annotations

import shutil
from functools import cache

from tests.stacks import deploy_example, user_data_by_node

EXAMPLE_STACKS = ("dev", "prod")


@cache
def example_user_data() -> dict[str, str]:
    """`{"<stack>/<droplet name>": user-data}` for every node of every example stack."""
    return {
        f"{stack}/{name}": user_data
        for stack in EXAMPLE_STACKS
        for name, user_data in user_data_by_node(deploy_example(stack)).items()
    }


def tool(name: str) -> str:
    """A Debian tool the checks need; its absence is a set-up error, never a skip."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path, f"{name} is not installed: run `make system-packages` (or .ci/run) first"
    return path
