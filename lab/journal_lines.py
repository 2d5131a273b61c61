"""The journal lines the lab reads, as `journalctl --output=short-unix` prints them inside a
droplet: `<epoch seconds> <hostname> <identifier>[<pid>]: <message>`."""

from __future__ import annotations

import re

_HEAD = r"^(\d+\.\d+) \S+ "
KEEPALIVED_STATE = re.compile(_HEAD + r"Keepalived_vrrp\[\d+\]: \(\S+\) Entering (\w+) STATE")
"""keepalived's VRRP process entering a state: (time, state)."""
AGENT_STATE = re.compile(_HEAD + r"ha-web-agent\[\d+\]: INFO keepalived says (\w+)")
"""The agent told of a state by keepalived's notify: (time, state)."""
UNIT_STARTING = re.compile(_HEAD + r"systemd\[1\]: Starting ([\w@.-]+) ")
"""systemd began a unit's start job: (time, unit)."""
UNIT_ENDED = re.compile(
    _HEAD + r"systemd\[1\]: (?:Finished ([\w@.-]+) |Failed to start ([\w@.-]+) )"
)
"""A oneshot unit's run ended, well or not: (time, unit if it finished, unit if it failed)."""
UNIT_STOPPING = re.compile(_HEAD + r"systemd\[1\]: Stopping ([\w@.-]+) ")
"""systemd began a unit's stop job: (time, unit)."""


def stamp(line: str) -> float | None:
    """A line's time, or None for a line that does not start with one (journalctl's notes)."""
    head = line.split(" ", 1)[0]
    try:
        return float(head)
    except ValueError:
        return None
