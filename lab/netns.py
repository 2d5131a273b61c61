"""Network namespaces for the lab's own threads, and commands run inside them.

A thread that calls `enter(name)` lives in that namespace from then on: sockets it
creates belong there. Only that thread moves (setns on a thread changes only that
thread), so the lab's emulator and client can live in different namespaces of one process.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Sequence

CLONE_NEWNET = 0x40000000


class NetnsError(RuntimeError):
    """A namespace command failed; the message gives the command and what to check."""


def enter(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise NetnsError(f"setns into {name} failed: {os.strerror(errno)}; run as root")
    finally:
        os.close(fd)


def run(
    namespace: str, argv: Sequence[str], stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """argv inside `namespace` (network only; the host's filesystem)."""
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if check and result.returncode != 0:
        raise NetnsError(
            f"`{' '.join(argv)}` in {namespace} failed ({result.returncode}): "
            f"{result.stderr.strip()}"
        )
    return result


def ip(*args: str, check: bool = True) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetnsError(
            f"`ip {' '.join(args)}` failed: {result.stderr.strip()}; run as root, and remove "
            "any leftover namespace or link of that name (a lab left running: python -m lab down)"
        )


def nft(namespace: str, script: str) -> None:
    run(namespace, ["nft", "-f", "-"], stdin=script)


def existing() -> list[str]:
    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
