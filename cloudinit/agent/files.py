"""Files the agent shares with root, keepalived and its other runs: written whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from .log import LOG


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Readers (keepalived, other agent runs) never see a half-written file.

    Root writes into /run/ha-web, which ha-web owns: the temporary file is created exclusively
    (O_EXCL never follows a planted symlink) and its mode set through the descriptor, not the
    name, which ha-web could swap for a symlink in between."""
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or unreadable as JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        LOG.warning("%s is not valid JSON; ignoring it", path)
        return None


def write_json(path: Path, value: object) -> None:
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
