"""Read a rendered systemd unit or drop-in the way systemd does, for tests that check what
it would run: sections of repeated keys, `\\` continuations, an empty assignment resetting
a list, and the `-`/`+` prefixes of Exec lines. Real systemd runs these units in the lab."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

Sections = dict[str, dict[str, list[str]]]


def parse(text: str) -> Sections:
    sections: Sections = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting before any [Section]: {line!r}"
        key, _, value = line.partition("=")
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return sections


@dataclass(frozen=True)
class ExecLine:
    argv: tuple[str, ...]
    ignore_failure: bool
    """`-`: a failing command does not fail the unit."""
    as_root: bool
    """`+`: runs with full privileges, whatever User= says."""


def exec_line(line: str) -> ExecLine:
    words = shlex.split(line)
    head = words[0]
    prefixes = head[: len(head) - len(head.lstrip("-+@!:"))]
    return ExecLine((head[len(prefixes) :], *words[1:]), "-" in prefixes, "+" in prefixes)
