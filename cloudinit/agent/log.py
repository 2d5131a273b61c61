"""Logging: syslog when there is one (keepalived's notify has no stderr), else stderr."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

LOG = logging.getLogger("ha-web-agent")


def setup_logging(target: str, echo_warnings: bool = False) -> None:
    """echo_warnings: with syslog, also write warnings and errors to stderr."""
    for old in list(LOG.handlers):
        LOG.removeHandler(old)
        old.close()
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    to_syslog = target == "syslog" or (target == "auto" and os.path.exists("/dev/log"))
    if to_syslog:
        syslog = logging.handlers.SysLogHandler(address="/dev/log")
        syslog.ident = "ha-web-agent: "
        syslog.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        LOG.addHandler(syslog)
    if to_syslog and not echo_warnings:
        return
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("ha-web-agent: %(levelname)s %(message)s"))
    if to_syslog:
        stream.setLevel(logging.WARNING)
    LOG.addHandler(stream)
