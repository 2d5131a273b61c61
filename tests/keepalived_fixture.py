"""The session's keepalived: Debian's tarball built once with the droplets' build script.

tests/conftest.py imports `keepalived_binary` so any lab test can ask for it.
"""

from pathlib import Path

import pytest

from lab.keepalived_source import ensure_keepalived


@pytest.fixture(scope="session")
def keepalived_binary() -> Path:
    """<staging root>/usr/sbin/keepalived, built (or reused) under .cache/keepalived/."""
    return ensure_keepalived()
