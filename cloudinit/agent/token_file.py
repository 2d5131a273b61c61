"""The failover token: read from its file, which only ha-web may read."""

from __future__ import annotations

import stat
from pathlib import Path

from .errors import AgentError

_FIX = (
    "a token is one line of printable ASCII without spaces. Write only the token "
    "(a trailing newline is fine), or set ha-web:failoverToken and redeploy"
)


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
        text = path.read_bytes().decode()  # bytes: text mode would turn a \r into \n
    except PermissionError:
        raise AgentError(
            f"cannot read token file {path}; run the agent as its owner (ha-web)"
        ) from None
    except UnicodeDecodeError:
        raise AgentError(f"token file {path} is not text (UTF-8); {_FIX}") from None
    token = text.removesuffix("\n").removesuffix("\r")
    if not token.strip():
        raise AgentError(f"token file {path} is empty; put the failover token in it")
    odd = next((c for c in token if not "!" <= c <= "~"), None)
    if odd is not None:
        # Never the token itself, nor where in it the character is.
        raise AgentError(
            f"token file {path} holds {_describe(odd)} in the token (not shown); {_FIX}"
        )
    return token


def _describe(char: str) -> str:
    names = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a carriage return"}
    if char in names:
        return names[char]
    if char.isascii():
        return "a control character"
    return "a character that is not ASCII"
