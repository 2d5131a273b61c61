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
    _HEAD + r"systemd\[1\]: (Finished|Failed to start|Dependency failed for) ([\w@.-]+) "
)
"""A oneshot unit's run ended: it finished, it failed, or it never ran because a unit it
requires failed: (time, how, unit)."""
UNIT_STOPPING = re.compile(_HEAD + r"systemd\[1\]: Stopping ([\w@.-]+) ")
"""systemd began a unit's stop job: (time, unit)."""


def stamp(line: str) -> float | None:
    """A line's time, or None for a line that does not start with one (journalctl's notes)."""
    head = line.split(" ", 1)[0]
    try:
        return float(head)
    except ValueError:
        return None


def runs_ended(journal: str, unit: str, since: float) -> list[float]:
    """When each run of a oneshot `unit` that ended at or after `since` ended, however it ended.
    A timer's unit runs on its period, so a count of these is a count of chances it had to act."""
    return [
        float(match[1])
        for line in journal.splitlines()
        if (match := UNIT_ENDED.match(line)) and match[3] == unit and float(match[1]) >= since
    ]


def entered(journal: str, state: str, since: float) -> list[float]:
    """When keepalived's VRRP process entered `state` (MASTER, BACKUP, FAULT), from `since`."""
    return [
        float(match[1])
        for line in journal.splitlines()
        if (match := KEEPALIVED_STATE.match(line))
        and match[2] == state
        and float(match[1]) >= since
    ]


def job_began(journal: str, began: re.Pattern[str], unit: str, since: float) -> float | None:
    """When systemd began the first start or stop job (`began`: UNIT_STARTING, UNIT_STOPPING)
    of `unit` at or after `since`. journald writes the line after systemctl has returned, so
    a caller waits for it."""
    for line in journal.splitlines():
        match = began.match(line)
        if match and match[2] == unit and float(match[1]) >= since:
            return float(match[1])
    return None
