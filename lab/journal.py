"""A droplet's journal: journald's stand-in.

A syslog socket at /run/systemd/journal/dev-log (where /dev/log points on a systemd
machine) and the service manager's own lines both go to one text file that persists
across reboots, as a persistent journal would. Each line is `<epoch seconds> <text>`,
so the lab can put droplet events on the same clock as the emulator and the client.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

DEV_LOG = Path("/run/systemd/journal/dev-log")
JOURNAL = Path("/var/log/lab-journal.log")
# RFC 3164 as glibc's syslog() sends it: <PRI>Mmm dd hh:mm:ss ident[pid]: message
_SYSLOG = re.compile(r"^<\d+>(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d )?(.*)$", re.S)


class Journal:
    def __init__(self, path: Path = JOURNAL) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8", buffering=1)
        os.chmod(path, 0o640)
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        line = text.rstrip("\n").replace("\n", " | ")
        with self._lock:
            self._file.write(f"{time.time():.3f} {line}\n")

    def serve_syslog(self, path: Path = DEV_LOG) -> None:
        """Receive syslog datagrams on `path` in a background thread."""
        path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        # Every local user may log, as with journald's socket.
        os.chmod(path, 0o666)
        threading.Thread(target=self._receive, args=(sock,), name="syslog", daemon=True).start()

    def _receive(self, sock: socket.socket) -> None:
        while True:
            data = sock.recv(65536)
            match = _SYSLOG.match(data.decode("utf-8", "replace").rstrip("\x00\n"))
            if match:
                self.write(match[1])
