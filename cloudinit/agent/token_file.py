"""The failover token: read from its file, which only ha-web may read."""

from __future__ import annotations

import stat
from pathlib import Path

from .errors import AgentError


def read_token(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AgentError(
            f"token file {path} not found; set ha-web:failoverToken and redeploy"
        ) from None
    except PermissionError:
        raise AgentError(
            f"cannot reach token file {path}; run the agent as the ha-web user"
        ) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(info.st_mode)
        raise AgentError(
            f"token file {path} is open to group or others (mode {mode:04o}); "
            f"refusing to use it. Run: chmod 600 {path}"
        )
    try:
        token = path.read_text().strip()
    except PermissionError:
        raise AgentError(
            f"cannot read token file {path}; run the agent as its owner (ha-web)"
        ) from None
    if not token:
        raise AgentError(f"token file {path} is empty; put the failover token in it")
    return token
