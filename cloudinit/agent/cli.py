"""The command line: arguments, logging, settings, and one function per subcommand."""

from __future__ import annotations

import argparse
import json
import os

from .claim import claim
from .config import CONFIG_ENV, DEFAULT_CONFIG, Config, config_path, load_config
from .errors import AgentError
from .log import LOG, setup_logging
from .state import MASTER, STOP, record_transition

DEFAULT_MAINTENANCE_TIMEOUT = 60.0
DESCRIPTION = (
    "ha-web-agent: moves the cluster's reserved IP to this droplet when keepalived makes it MASTER"
)


def notify(cfg: Config, args: argparse.Namespace) -> int:
    new_state = str(args.state).upper()
    recorded = record_transition(cfg, new_state, args.priority, os.getppid())
    if recorded is None or new_state != MASTER:
        return 0
    return claim(cfg).exit_code


def keepalived_stopped(cfg: Config) -> int:
    """keepalived's unit ran its ExecStopPost: it stopped, crashed or was killed, and sent no
    notify. Peers must stop counting on this node (holder_check.py), so record STOP."""
    record_transition(cfg, STOP, 0, 0)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ha-web-agent", description=DESCRIPTION)
    parser.add_argument(
        "--config", help=f"settings file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    note = commands.add_parser("notify", help="keepalived's notify handler")
    note.add_argument("kind", help="INSTANCE or GROUP")
    note.add_argument("name", help="the VRRP instance")
    note.add_argument("state", help="MASTER, BACKUP, FAULT or STOP")
    note.add_argument("priority", type=int)
    commands.add_parser(
        "keepalived-stopped", help="keepalived's unit stopped: record STOP (ExecStopPost)"
    )
    commands.add_parser("claim", help="move the reserved IP here if this node is MASTER")
    commands.add_parser("peers", help="fetch the cluster's peers into peers.json (as ha-web)")
    commands.add_parser(
        "apply-peers", help="hand peers.json to keepalived and the firewall (as root)"
    )
    commands.add_parser("reconcile", help="claim the IP if MASTER and it is not here (timer)")
    commands.add_parser("status", help="print this node's view as JSON")
    maintenance = commands.add_parser(
        "maintenance",
        help="planned switchover: move the reserved IP off this node first (as root or ha-web)",
    )
    maintenance.add_argument(
        "action",
        choices=("on", "off", "status"),
        help="on: move the IP to another member and wait until it answers; off: rejoin",
    )
    maintenance.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_MAINTENANCE_TIMEOUT,
        help="seconds `on` waits for another member to hold the IP and answer (default: "
        f"{DEFAULT_MAINTENANCE_TIMEOUT:g})",
    )
    maintenance.add_argument(
        "--force",
        action="store_true",
        help="`on` even if no other member answers its health URL (none can take over)",
    )
    return parser.parse_args(argv)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return seconds


def maintenance(cfg: Config, args: argparse.Namespace) -> int:
    from .maintenance import maintenance_off, maintenance_on, maintenance_status

    match args.action:
        case "on":
            return maintenance_on(cfg, args.timeout, args.force)
        case "off":
            return maintenance_off(cfg)
        case _:
            return maintenance_status(cfg)


def run_command(cfg: Config, args: argparse.Namespace) -> int:
    # Only notify and claim are imported at the top: they are keepalived's path to the assign
    # call, and the other subcommands' modules would cost each notify's start about 1.5 ms.
    match args.command:
        case "notify":
            return notify(cfg, args)
        case "claim":
            return claim(cfg).exit_code
        case "keepalived-stopped":
            return keepalived_stopped(cfg)
        case "peers":
            from .peers import refresh_peers

            return refresh_peers(cfg)
        case "apply-peers":
            from .peers import apply_peers

            return apply_peers(cfg)
        case "reconcile":
            from .reconcile import reconcile

            return reconcile(cfg)
        case "maintenance":
            return maintenance(cfg, args)
        case _:
            from .status import status

            print(json.dumps(status(cfg), indent=2, sort_keys=True))
            return 0


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when done or nothing to do, 1 when the job failed, 2 on bad settings."""
    args = parse_args(argv)
    setup_logging("auto")
    try:
        cfg = load_config(config_path(args.config))
    except AgentError as exc:
        LOG.error("%s", exc)
        return 2
    # An operator runs maintenance by hand: its warnings and errors must reach the terminal too.
    setup_logging(cfg.log_target, echo_warnings=args.command == "maintenance")
    try:
        return run_command(cfg, args)
    except AgentError as exc:
        LOG.error("%s", exc)
    except OSError as exc:
        LOG.error(
            "%s: %s. Check that %s and %s exist and belong to ha-web (systemd-tmpfiles --create)",
            exc.filename or "file access",
            exc.strerror or exc,
            cfg.state_dir,
            cfg.data_dir,
        )
    return 1
