"""The agent's exceptions: what the operator must fix, what the API refused, what may pass."""

from __future__ import annotations


class AgentError(Exception):
    """A problem the operator has to fix; the message says what and how."""


class FatalApiError(AgentError):
    """An API answer that retrying cannot fix (401, 403, 404, other 4xx)."""


class RetryableError(Exception):
    """A failure that may pass: 422 pending event, 429, 5xx, timeouts, lost connections."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
