"""A lab droplet's boot, run inside its namespaces: fresh /run and /dev, the journal,
the service manager, then cloud-init, as systemd and cloud-init boot a real droplet.

The host side (droplet.py) starts it with nsenter and reads its stdout: every line is a
boot message, and `BOOTED` marks the end of the boot. It then stays up as the droplet's
systemd until the droplet is crashed or torn down.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from lab import systemctl
from lab.cloud_config import SHIM_DIR, CloudInit, KeepalivedBuild
from lab.journal import DEV_LOG, JOURNAL, Journal
from lab.reaper import Reaper
from lab.service_manager import Manager

BOOTED = "lab: boot finished"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def say(message: str) -> None:
    print(f"lab: {message}", flush=True)


def fresh_run() -> None:
    """/run is a tmpfs on every boot, as on Ubuntu; /var/lib stays, as a disk does."""
    _sh("mount -t tmpfs -o mode=0755,nosuid,nodev lab-run /run")
    for directory in (DEV_LOG.parent, SHIM_DIR, Path("/run/lock")):
        directory.mkdir(parents=True, exist_ok=True)
    shim = SHIM_DIR / "systemctl"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m lab.systemctl "$@"\n')
    shim.chmod(0o755)


def fresh_dev() -> None:
    """A private /dev, so /dev/log can be this droplet's journal socket and no one else's."""
    staging = "/run/lab/dev"
    lines = [f"mkdir -p {staging}", f"mount -t tmpfs -o mode=0755,nosuid lab-dev {staging}"]
    for device in DEVICES:
        lines += [f"touch {staging}/{device}", f"mount --bind /dev/{device} {staging}/{device}"]
    lines += [
        f"mkdir {staging}/pts {staging}/shm",
        f"ln -s /proc/self/fd {staging}/fd",
        f"ln -s /proc/self/fd/0 {staging}/stdin",
        f"ln -s /proc/self/fd/1 {staging}/stdout",
        f"ln -s /proc/self/fd/2 {staging}/stderr",
        f"ln -s {DEV_LOG} {staging}/log",
        f"mount --move {staging} /dev",
    ]
    _sh(" && ".join(lines))


def _sh(script: str) -> None:
    # Runs before the reaper exists, so waiting on the child here is safe.
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"lab: droplet setup failed: {script}: {result.stderr.strip()}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.droplet_init")
    parser.add_argument("--instance-id", required=True)
    parser.add_argument(
        "--keepalived",
        nargs=3,
        action="append",
        default=[],
        metavar=("VERSION", "SHA256", "ROOT"),
        help="a keepalived build (make install's DESTDIR) the droplet may install",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fresh_run()
    fresh_dev()
    journal = Journal(JOURNAL)
    journal.serve_syslog()
    reaper = Reaper()
    manager = Manager(reaper, journal)
    systemctl.serve(manager)
    say(
        "systemd is replaced by lab.service_manager (unit files as written; sandboxing "
        "settings such as ProtectSystem= are not enforced)"
    )
    say(f"journald is replaced by a syslog sink on /dev/log, written to {JOURNAL}")
    user_data = Path("/var/lib/cloud/instances", args.instance_id, "user-data.txt")
    text = user_data.read_text(encoding="utf-8")
    if not text.startswith("#cloud-config"):
        say(f"{user_data} is not a #cloud-config document; nothing to run")
        return 1
    builds = [KeepalivedBuild(v, s, Path(r)) for v, s, r in args.keepalived]
    cloud = CloudInit(
        yaml.safe_load(text),
        args.instance_id,
        manager=manager,
        reaper=reaper,
        journal=journal,
        builds=builds,
        say=say,
    )
    cloud.init_stage()
    manager.boot()
    cloud.config_stage()
    cloud.final_stage()
    print(BOOTED + (f" with {len(cloud.failures)} failures" if cloud.failures else ""), flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
