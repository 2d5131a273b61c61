"""systemd unit files, read the way systemd reads them (as far as the lab's service manager needs).

A unit is its main file from the first directory of the search path that has it, plus the
drop-ins `<unit>.d/*.conf` from every directory, in file-name order. An empty assignment
(`ExecStart=`) clears a list, as in systemd.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SEARCH_PATH = (
    Path("/etc/systemd/system"),
    Path("/run/systemd/system"),
    Path("/usr/local/lib/systemd/system"),
    Path("/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
)


class UnitError(RuntimeError):
    """A unit is missing or cannot be read; the message names it and says what to check."""


@dataclass
class Unit:
    name: str
    path: Path
    sections: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def values(self, section: str, key: str) -> list[str]:
        return list(self.sections.get(section, {}).get(key, []))

    def get(self, section: str, key: str, default: str = "") -> str:
        found = self.values(section, key)
        return found[-1] if found else default

    def words(self, section: str, key: str) -> list[str]:
        """A space-separated list setting such as Wants= or After=, over all its lines."""
        return [word for line in self.values(section, key) for word in line.split()]

    @property
    def kind(self) -> str:
        return self.name.rpartition(".")[2]


def parse(
    text: str, into: dict[str, dict[str, list[str]]] | None = None
) -> dict[str, dict[str, list[str]]]:
    sections = into if into is not None else {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        if not sep or current is None:
            continue
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return sections


def load(name: str, search_path: Sequence[Path] = SEARCH_PATH) -> Unit:
    main = next((d / name for d in search_path if (d / name).is_file()), None)
    if main is None:
        raise UnitError(
            f"unit {name} not found in {', '.join(map(str, search_path))}; "
            "check its name, or that the package or write_files entry that installs it ran."
        )
    sections = parse(main.read_text(encoding="utf-8"))
    for directory in search_path:
        for dropin in sorted((directory / f"{name}.d").glob("*.conf")):
            parse(dropin.read_text(encoding="utf-8"), sections)
    return Unit(name, main, sections)


@dataclass(frozen=True)
class Command:
    """One Exec*= line: its argv and the prefixes that change how it runs."""

    argv: tuple[str, ...]
    ignore_failure: bool = False
    """`-`: a non-zero exit does not fail the unit."""
    as_root: bool = False
    """`+` (or `!`): runs with full privileges, ignoring User= and Group=."""


def command(line: str, env: dict[str, str]) -> Command:
    """Parse an Exec line with systemd's prefixes and variable rules.

    `$VAR` as a whole word splits into words; `${VAR}` is replaced inside a word.
    """
    ignore = root = False
    while line and line[0] in "-+!@:":
        ignore |= line[0] == "-"
        root |= line[0] in "+!"
        line = line[1:]
    argv: list[str] = []
    for word in shlex.split(line):
        if word.startswith("$") and not word.startswith("${") and word[1:].isidentifier():
            argv += env.get(word[1:], "").split()
            continue
        expanded = word
        for key, value in env.items():
            expanded = expanded.replace("${" + key + "}", value)
        argv.append(expanded)
    return Command(tuple(argv), ignore, root)


def environment_file(path: Path) -> dict[str, str]:
    """KEY=value lines; quotes around the value are removed, as systemd does."""
    env: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if sep:
            words = shlex.split(value, comments=False) if value else [""]
            env[key.strip()] = " ".join(words)
    return env


def seconds(value: str, default: float) -> float:
    """A time span such as `5`, `5s`, `500ms`, `2min` or `1min 30s`."""
    if not value:
        return default
    units = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
    total = 0.0
    for part in value.split():
        number = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        suffix = part[len(number) :] or "s"
        if suffix not in units or not number:
            raise UnitError(f"time span {value!r} is not understood; write it like 5s or 500ms.")
        total += float(number) * units[suffix]
    return total
