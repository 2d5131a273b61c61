"""This droplet's id and private address, from the metadata service once, then from a cache."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

from .config import Config
from .errors import AgentError, RetryableError
from .files import read_json, write_json
from .log import LOG
from .transport import http_request


class Identity(NamedTuple):
    """This droplet, as the metadata service describes it."""

    droplet_id: int
    private_ip: str


def fetch_identity(cfg: Config) -> Identity:
    """No token: the metadata service needs none, and must never see it."""
    url = f"{cfg.metadata_base_url}/metadata/v1.json"
    try:
        reply = http_request("GET", url, cfg.request_timeout)
    except RetryableError as exc:
        raise AgentError(
            f"metadata service {cfg.metadata_base_url} unreachable ({exc}); retry later"
        ) from None
    raw = reply.json()
    try:
        if reply.status != 200:
            raise ValueError
        return Identity(
            int(raw["droplet_id"]), str(raw["interfaces"]["private"][0]["ipv4"]["ip_address"])
        )
    except (KeyError, IndexError, TypeError, ValueError):
        raise AgentError(
            f"metadata at {url} (status {reply.status}) has no droplet_id or private IPv4; "
            "the droplet must be in a VPC with a private interface"
        ) from None


def load_identity(cfg: Config) -> Identity:
    """From the cache in data_dir; the metadata service is asked once, then never again."""
    cached = read_json(cfg.droplet_file)
    if isinstance(cached, dict):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return Identity(int(cached["droplet_id"]), str(cached["private_ip"]))
    identity = fetch_identity(cfg)
    try:
        write_json(cfg.droplet_file, identity._asdict())
    except OSError as exc:
        LOG.warning(
            "could not cache %s (%s); create %s owned by ha-web",
            cfg.droplet_file,
            exc,
            cfg.data_dir,
        )
    return identity
