"""`systemctl` for a lab droplet: the verbs ha-web's boot and the drills use.

Inside the droplet's boot process, `run()` calls the service manager directly (runcmd's
`systemctl ...`). Other processes in the droplet (a shell, the lab's drills through
nsenter) run `python -m lab.systemctl VERB UNIT...`, which asks the manager over a unix
socket in the droplet's /run.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path

from lab.service_manager import Manager, normalize
from lab.unit_files import UnitError

SOCKET = Path("/run/systemd/lab-manager.sock")


def run(manager: Manager, argv: list[str]) -> tuple[int, str]:
    """(exit code, output) of `systemctl argv`."""
    options = {a for a in argv if a.startswith("-")}
    words = [a for a in argv if not a.startswith("-")]
    if not words:
        return 1, "systemctl: no verb given; use start, stop, enable --now, is-active, ..."
    verb, names = words[0], [normalize(n) for n in words[1:]]
    try:
        return _dispatch(manager, verb, names, "--now" in options)
    except UnitError as error:
        return 5, f"systemctl {verb}: {error}"


def _dispatch(manager: Manager, verb: str, names: list[str], now: bool) -> tuple[int, str]:
    if verb == "daemon-reload":
        manager.daemon_reload()
        return 0, ""
    if verb in ("start", "restart"):
        if verb == "restart":
            for name in names:
                manager.stop(name)
        failed = [n for n in names if not manager.start(n)]
        return _outcome(verb, failed)
    if verb == "stop":
        for name in names:
            manager.stop(name)
        return 0, ""
    if verb == "reload":
        return _outcome(verb, [n for n in names if not manager.reload(n)])
    if verb in ("reload-or-restart", "try-reload-or-restart"):
        return _outcome(verb, [n for n in names if not manager.reload_or_restart(n)])
    if verb in ("enable", "disable"):
        lines: list[str] = []
        for name in names:
            if verb == "enable":
                lines += manager.enable(name)
            else:
                manager.disable(name)
                if now:
                    manager.stop(name)
        failed = [n for n in names if now and verb == "enable" and not manager.start(n)]
        code, text = _outcome("start", failed)
        return code, "\n".join([*lines, text]).strip()
    if verb == "is-active":
        states = [manager.is_active(n) for n in names]
        return (0 if all(s == "active" for s in states) else 3), "\n".join(states)
    if verb == "is-enabled":
        enabled = [manager.is_enabled(n) for n in names]
        return (0 if all(enabled) else 1), "\n".join(
            "enabled" if e else "disabled" for e in enabled
        )
    if verb == "show-main-pid":
        svc = manager.services.get(names[0])
        return 0, str(svc.main or 0) if svc else "0"
    if verb == "status":
        return 0, "\n".join(_status(manager, n) for n in names)
    return 1, f"systemctl: verb {verb!r} is not supported in the lab"


def _outcome(verb: str, failed: list[str]) -> tuple[int, str]:
    if not failed:
        return 0, ""
    return 1, "\n".join(
        f"Job for {n} failed ({verb}). See the droplet's journal: /var/log/lab-journal.log"
        for n in failed
    )


def _status(manager: Manager, name: str) -> str:
    svc = manager.services.get(name)
    if svc is None:
        return f"{name}: {manager.is_active(name)}"
    return (
        f"{name}: {svc.state} ({svc.result}) main pid {svc.main or '-'}, "
        f"{svc.restarts} automatic restarts"
    )


def serve(manager: Manager, path: Path = SOCKET) -> None:
    """Answer `python -m lab.systemctl` from other processes in a background thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o600)  # root only, as systemd's private bus
    server.listen(16)

    def answer(conn: socket.socket) -> None:
        with conn, conn.makefile("rw", encoding="utf-8") as stream:
            request = json.loads(stream.readline())
            code, output = run(manager, [str(a) for a in request["argv"]])
            stream.write(json.dumps({"code": code, "output": output}) + "\n")

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, name="systemctl", daemon=True).start()


def main(argv: list[str]) -> int:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(SOCKET))
            with sock.makefile("rw", encoding="utf-8") as stream:
                stream.write(json.dumps({"argv": argv}) + "\n")
                stream.flush()
                reply = json.loads(stream.readline())
    except OSError as error:
        print(
            f"systemctl: the lab's service manager is not answering on {SOCKET} ({error}); "
            "run this inside a booted lab droplet, as root.",
            file=sys.stderr,
        )
        return 1
    if reply["output"]:
        print(reply["output"])
    return int(reply["code"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
