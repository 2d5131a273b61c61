"""Fixtures shared across test modules."""

from tests.keepalived_fixture import keepalived_binary

__all__ = ["keepalived_binary"]
