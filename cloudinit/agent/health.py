"""A member's health URL (nginx's, on its private address), as reconcile and maintenance ask it."""

from __future__ import annotations

from .config import Config
from .errors import RetryableError
from .transport import http_request


def health_url(cfg: Config, private_ip: str) -> str:
    return f"http://{private_ip}:{cfg.health_port}{cfg.health_path}"


def health_status(cfg: Config, private_ip: str) -> int | None:
    """The status a member's health URL answers; None when it does not answer."""
    try:
        return http_request("GET", health_url(cfg, private_ip), cfg.request_timeout).status
    except RetryableError:
        return None
