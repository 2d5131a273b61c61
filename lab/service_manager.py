"""systemd's stand-in inside a lab droplet.

It reads the unit files cloud-init and packages wrote (unit_files.py) and runs them the
way systemd would for the settings ha-web's units use: Type= simple, exec, notify, forking
and oneshot; ExecStartPre/ExecStart/ExecStartPost/ExecReload/ExecStop/ExecStopPost with the
`-` and `+` prefixes; User=/Group=; EnvironmentFile=/Environment=; PIDFile=; Restart= with
RestartSec= and a start limit; Wants=/Requires= and After= ordering; KillMode= and
TimeoutStopSec=; timers by OnBootSec=/OnUnitActiveSec=; enablement as `.wants/` links. What
it does not enforce (sandboxing such as ProtectSystem=, NoNewPrivileges=) the lab says at boot.

Every way a service ends takes systemd's stop path (service.c): a `systemctl stop`, the main
process exiting or being killed, a failed start, a oneshot finishing. ExecStop= runs only for
a unit that started and whose main process did not fail; then the kill that KillMode= says;
then ExecStopPost=, always, with $SERVICE_RESULT, $EXIT_CODE and $EXIT_STATUS; then whatever
is left is killed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lab import unit_files
from lab.journal import Journal
from lab.reaper import Child, Reaper, alive
from lab.unit_files import Command, Unit, UnitError
from lab.unit_processes import final_signals, live_sessions, main_sessions, members, stop_signals

UNIT_DIR = Path("/etc/systemd/system")
NOTIFY_DIR = Path("/run/systemd/notify")
BOOT_TARGETS = (
    "sysinit.target",
    "basic.target",
    "network-pre.target",
    "network.target",
    "network-online.target",
    "multi-user.target",
    "timers.target",
    "default.target",
)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 30.0
PID_FILE_TIMEOUT = 5.0
"""Seconds a forking unit's PID file may take to name a running process once its starter
exited: a daemon may write it itself, after the fork."""
STOP_TIMEOUT = 10.0
START_LIMIT_BURST = 5
START_LIMIT_INTERVAL = 10.0

Say = Callable[[str], None]


@dataclass
class Service:
    unit: Unit
    state: str = "inactive"
    main: int | None = None
    result: str = "success"
    last_activation: float | None = None
    """Monotonic time the last start began: what OnUnitActiveSec= counts from."""
    starts: list[float] = field(default_factory=list)
    restarts: int = 0
    stopping: bool = False
    job: threading.RLock = field(default_factory=threading.RLock)
    restart_timer: threading.Timer | None = None
    sessions: set[int] = field(default_factory=set)
    """Session ids of the unit's processes: the lab's stand-in for its cgroup."""
    exit: tuple[str, str] | None = None
    """$EXIT_CODE and $EXIT_STATUS of the main process, once it ended."""


@dataclass
class Timer:
    unit: Unit
    target: str
    stop: threading.Event = field(default_factory=threading.Event)
    boot_fired: bool = False


class Manager:
    def __init__(self, reaper: Reaper, journal: Journal) -> None:
        self.reaper = reaper
        self.journal = journal
        self.boot_time = time.monotonic()
        self.services: dict[str, Service] = {}
        self.timers: dict[str, Timer] = {}
        self._lock = threading.RLock()
        self._starting = threading.local()

    # -- units --

    def service(self, name: str) -> Service:
        with self._lock:
            if name not in self.services:
                self.services[name] = Service(unit_files.load(name))
            return self.services[name]

    def daemon_reload(self) -> None:
        """Re-read unit files; running services keep their state, as with systemd."""
        with self._lock:
            for name, svc in self.services.items():
                with contextlib.suppress(UnitError):
                    svc.unit = unit_files.load(name)
            for timer in self.timers.values():
                with contextlib.suppress(UnitError):
                    timer.unit = unit_files.load(timer.unit.name)

    def is_active(self, name: str) -> str:
        name = normalize(name)
        if name.endswith(".target"):
            return "active"
        if name.endswith(".timer"):
            timer = self.timers.get(name)
            return "active" if timer and not timer.stop.is_set() else "inactive"
        with self._lock:
            svc = self.services.get(name)
        return svc.state if svc else "inactive"

    # -- start --

    def start(self, name: str) -> bool:
        name = normalize(name)
        if name.endswith(".target"):
            return True
        if name.endswith(".timer"):
            return self._start_timer(name)
        visiting: set[str] = getattr(self._starting, "names", set())
        if name in visiting:
            return True
        visiting.add(name)
        self._starting.names = visiting
        try:
            return self._start_service(name)
        finally:
            visiting.discard(name)

    def _start_service(self, name: str) -> bool:
        try:
            svc = self.service(name)
        except UnitError as error:
            self.journal.write(f"systemd: {error}")
            return False
        for wanted in svc.unit.words("Unit", "Wants") + svc.unit.words("Unit", "Requires"):
            required = wanted in svc.unit.words("Unit", "Requires")
            if not self.start(wanted) and required:
                self._set(svc, "failed", "dependency")
                return False
        with svc.job:
            if svc.state in ("active", "activating"):
                return True
            if svc.restart_timer:
                svc.restart_timer.cancel()
                svc.restart_timer = None
            now = time.monotonic()
            svc.starts = [t for t in svc.starts if now - t < START_LIMIT_INTERVAL] + [now]
            if len(svc.starts) > START_LIMIT_BURST:
                self.journal.write(f"systemd: {name}: start request repeated too quickly")
                self._set(svc, "failed", "start-limit-hit")
                return False
            svc.stopping = False
            svc.last_activation = now
            svc.sessions = set()
            svc.exit = None
            self._set(svc, "activating", "success")
            ok = self._activate(svc)
            if not ok:
                # A failed start still takes the stop path: ExecStopPost= runs, ExecStop= not.
                self._shut_down(svc, svc.result if svc.result != "success" else "exit-code")
                self._maybe_restart(svc)
            return ok

    def _activate(self, svc: Service) -> bool:
        unit = svc.unit
        kind = unit.get("Service", "Type", "simple")
        env = self._environment(unit)
        for line in unit.values("Service", "ExecStartPre"):
            if not self._run_sync(svc, line, env):
                return False
        if kind == "oneshot":
            for line in unit.values("Service", "ExecStart"):
                if not self._run_sync(svc, line, env):
                    return False
        else:
            lines = unit.values("Service", "ExecStart")
            if not lines:
                svc.result = "no-exec"
                return False
            if not self._start_main(svc, lines[0], env, kind):
                return False
            env = env | {"MAINPID": str(svc.main)}
        for line in unit.values("Service", "ExecStartPost"):
            if not self._run_sync(svc, line, env):
                return False
        if kind == "oneshot" and unit.get("Service", "RemainAfterExit") not in ("yes", "true"):
            # Nothing is left running: systemd stops the unit at once, ExecStop= included.
            self._shut_down(svc, "success", exec_stop=True)
        else:
            self._set(svc, "active", "success")
        return True

    def _start_main(self, svc: Service, line: str, env: dict[str, str], kind: str) -> bool:
        name = svc.unit.name
        notify_path = NOTIFY_DIR / f"{name}.sock"
        notify_sock: socket.socket | None = None
        if kind == "notify":
            NOTIFY_DIR.mkdir(parents=True, exist_ok=True)
            notify_path.unlink(missing_ok=True)
            notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify_sock.bind(str(notify_path))
            os.chmod(notify_path, 0o666)
            env = env | {"NOTIFY_SOCKET": str(notify_path)}
        try:
            child = self._spawn(svc, line, env)
            if child is None:
                return False
            if kind == "forking":
                code = child.wait(START_TIMEOUT)
                if code != 0:
                    svc.result = "exit-code"
                    return False
                pid = self._read_pid_file(svc.unit)
                if pid is None:
                    svc.result = "protocol"
                    return False
                svc.main = pid
                # The daemon left its starter and was re-parented here: this process reaps it.
                child = self.reaper.adopt(pid)
            else:
                svc.main = child.pid
            svc.sessions |= main_sessions(svc.main)
            if notify_sock is not None and not self._await_ready(notify_sock, child, svc.unit):
                svc.result = "protocol"
                return False
        finally:
            if notify_sock is not None:
                notify_sock.close()
                notify_path.unlink(missing_ok=True)
        threading.Thread(
            target=self._watch, args=(svc, svc.main, child), name=f"watch-{name}", daemon=True
        ).start()
        return True

    def _await_ready(self, sock: socket.socket, child: Child, unit: Unit) -> bool:
        """READY=1, or PIDFile= naming the main process.

        keepalived sends READY=1 only when its parent is PID 1 called systemd
        (lib/systemd.c, check_parent_systemd), which the lab's manager cannot be. It writes
        its PID file once it runs, so that is taken as the same signal."""
        deadline = time.monotonic() + START_TIMEOUT
        pid_file = Path(unit.get("Service", "PIDFile")) if unit.get("Service", "PIDFile") else None
        sock.settimeout(0.1)
        while time.monotonic() < deadline:
            if child.done.is_set():
                return False
            if pid_file is not None and _pid_in(pid_file) == child.pid:
                return True
            try:
                message = sock.recv(4096).decode("utf-8", "replace")
            except TimeoutError:
                continue
            if "READY=1" in message.splitlines():
                return True
        return False

    def _read_pid_file(self, unit: Unit) -> int | None:
        path = Path(unit.get("Service", "PIDFile"))
        deadline = time.monotonic() + PID_FILE_TIMEOUT
        while time.monotonic() < deadline:
            # An empty or half-written file is no pid yet: `nginx -t` leaves an empty one.
            pid = _pid_in(path)
            if pid is not None and alive(pid):
                return pid
            time.sleep(0.05)
        self.journal.write(
            f"systemd: {unit.name}: PID file {path} names no running process "
            f"{PID_FILE_TIMEOUT:g} s after the start command exited; check that PIDFile= is "
            "where the daemon writes its pid and that the daemon keeps running"
        )
        return None

    def _watch(self, svc: Service, pid: int, child: Child) -> None:
        # An adopted main that this process somehow does not reap is still seen to end.
        while not child.wait(0.2) and alive(pid):
            continue
        code = child.returncode
        with svc.job:
            if svc.main != pid or svc.stopping:
                return
            svc.main = None
            if code is None or code >= 0:
                svc.exit = ("exited", str(code or 0))
                result = "success" if not code else "exit-code"
                self.journal.write(
                    f"systemd: {svc.unit.name}: main process exited, code=exited, "
                    f"status={code or 0}"
                )
            else:
                svc.exit = ("killed", _signal_name(-code))
                result = "signal"
                self.journal.write(
                    f"systemd: {svc.unit.name}: main process exited, code=killed, "
                    f"status={-code}/{svc.exit[1]}"
                )
            # A clean exit is stopped as usual; a failed one skips ExecStop= (service.c).
            self._shut_down(svc, result, exec_stop=result == "success")
            self._maybe_restart(svc)

    def _shut_down(self, svc: Service, result: str, *, exec_stop: bool = False) -> None:
        """systemd's stop path, from ExecStop= (when `exec_stop`) to inactive or failed.

        Called with svc.job held."""
        unit = svc.unit
        main = svc.main if svc.main and alive(svc.main) else None
        stops = unit.values("Service", "ExecStop") if exec_stop else []
        posts = unit.values("Service", "ExecStopPost")
        mode = unit.get("Service", "KillMode", "control-group")
        timeout = unit_files.seconds(unit.get("Service", "TimeoutStopSec"), STOP_TIMEOUT)

        def group() -> list[int]:
            return members(svc.sessions, svc.main)

        if stops or posts or main or group():
            self._set(svc, "deactivating", result)
        env = self._environment(unit) | self._result_env(svc, result)
        env |= {"MAINPID": str(main)} if main else {}
        for line in stops:
            if not self._run_sync(svc, line, env, timeout):
                result = _first_failure(result, svc.result)
        stop_signals(mode, main, group, timeout)
        svc.main = None
        for line in posts:
            env = self._environment(unit) | self._result_env(svc, result)
            if not self._run_sync(svc, line, env, timeout):
                result = _first_failure(result, svc.result)
        final_signals(mode, group, timeout)
        self._set(svc, "inactive" if result == "success" else "failed", result)

    @staticmethod
    def _result_env(svc: Service, result: str) -> dict[str, str]:
        env = {"SERVICE_RESULT": result}
        if svc.exit is not None:
            env |= {"EXIT_CODE": svc.exit[0], "EXIT_STATUS": svc.exit[1]}
        return env

    def _maybe_restart(self, svc: Service) -> None:
        policy = svc.unit.get("Service", "Restart", "no")
        if svc.stopping or svc.result == "start-limit-hit":
            return
        failed = svc.result != "success"
        abnormal = svc.result in ("signal", "core-dump", "timeout", "watchdog")
        if (
            policy == "always"
            or (policy == "on-failure" and failed)
            or (policy == "on-abnormal" and abnormal)
            or (policy == "on-success" and not failed)
        ):
            delay = unit_files.seconds(svc.unit.get("Service", "RestartSec"), 0.1)
            svc.restarts += 1
            timer = threading.Timer(delay, self._restart_now, (svc,))
            timer.daemon = True
            svc.restart_timer = timer
            timer.start()

    def _restart_now(self, svc: Service) -> None:
        with svc.job:
            svc.restart_timer = None
            if svc.stopping or svc.state in ("active", "activating"):
                return
            svc.state = "inactive"
        self.start(svc.unit.name)

    # -- running commands --

    def _environment(self, unit: Unit) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}
        for line in unit.values("Service", "EnvironmentFile"):
            optional = line.startswith("-")
            path = Path(line.lstrip("-"))
            if path.is_file():
                env |= unit_files.environment_file(path)
            elif not optional:
                self.journal.write(f"systemd: {unit.name}: EnvironmentFile {path} is missing")
        for line in unit.values("Service", "Environment"):
            for assignment in shlex.split(line):
                key, _, value = assignment.partition("=")
                env[key] = value
        user = unit.get("Service", "User")
        if user:
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(user)
                env |= {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user}
        return env

    def _spawn(self, svc: Service, line: str, env: dict[str, str]) -> Child | None:
        command = unit_files.command(line, env)
        user, group = self._identity(svc.unit, command)
        self._forget_ended_sessions()
        try:
            child = self.reaper.spawn(command.argv, env, user=user, group=group)
        except (OSError, KeyError, ValueError) as error:
            self.journal.write(f"systemd: {svc.unit.name}: cannot run {command.argv[0]}: {error}")
            svc.result = "exec"
            return None
        svc.sessions.add(child.pid)  # spawn starts a session
        threading.Thread(target=self._log_output, args=(svc.unit.name, child), daemon=True).start()
        return child

    def _identity(self, unit: Unit, command: Command) -> tuple[str | None, str | None]:
        user = unit.get("Service", "User") or None
        if command.as_root or user is None:
            return None, None
        # With no Group=, systemd uses the user's primary group; Popen would keep root's.
        group = unit.get("Service", "Group") or pwd.getpwnam(user).pw_gid
        return user, str(group)

    def _run_sync(
        self, svc: Service, line: str, env: dict[str, str], timeout: float = START_TIMEOUT
    ) -> bool:
        command = unit_files.command(line, env)
        child = self._spawn(svc, line, env)
        if child is None:
            return command.ignore_failure
        code = child.wait(timeout)
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            svc.result = "timeout"
            return False
        if code != 0 and not command.ignore_failure:
            self.journal.write(f"systemd: {svc.unit.name}: {command.argv[0]} exited {code}")
            svc.result = "exit-code"
            return False
        return True

    def _forget_ended_sessions(self) -> None:
        with self._lock:
            known = {name: set(svc.sessions) for name, svc in self.services.items()}
        live = live_sessions()
        with self._lock:
            for name, svc in self.services.items():
                # A session recorded during the scan may have started after it looked; and a
                # living main may still start the session its pid names (main_sessions).
                keep = live | ({svc.main} if svc.main else set())
                svc.sessions -= known.get(name, set()) - keep

    def _log_output(self, name: str, child: Child) -> None:
        if child.stdout is None:
            return
        with child.stdout:
            for raw in child.stdout:
                self.journal.write(f"{name}[{child.pid}]: {raw.decode('utf-8', 'replace')}")

    # -- stop, reload --

    def stop(self, name: str) -> bool:
        name = normalize(name)
        if name.endswith(".timer"):
            timer = self.timers.pop(name, None)
            if timer:
                timer.stop.set()
            return True
        with self._lock:
            svc = self.services.get(name)
        if svc is None:
            return True
        with svc.job:
            svc.stopping = True
            if svc.restart_timer:
                svc.restart_timer.cancel()
                svc.restart_timer = None
            # An inactive or failed unit has nothing to stop (its stop path ran when it ended).
            if svc.state in ("active", "activating"):
                self._shut_down(svc, "success", exec_stop=True)
        return True

    def reload(self, name: str) -> bool:
        svc = self.service(normalize(name))
        lines = svc.unit.values("Service", "ExecReload")
        if not lines or svc.state != "active":
            return False
        env = self._environment(svc.unit) | {"MAINPID": str(svc.main or "")}
        return all(self._run_sync(svc, line, env) for line in lines)

    def reload_or_restart(self, name: str) -> bool:
        svc = self.service(normalize(name))
        if svc.state == "active" and svc.unit.values("Service", "ExecReload"):
            return self.reload(name)
        self.stop(name)
        return self.start(name)

    # -- timers --

    def _start_timer(self, name: str) -> bool:
        with self._lock:
            if name in self.timers and not self.timers[name].stop.is_set():
                return True
            try:
                unit = unit_files.load(name)
            except UnitError as error:
                self.journal.write(f"systemd: {error}")
                return False
            target = unit.get("Timer", "Unit", name.removesuffix(".timer") + ".service")
            timer = Timer(unit, target)
            self.timers[name] = timer
        threading.Thread(target=self._run_timer, args=(timer,), name=name, daemon=True).start()
        return True

    def _run_timer(self, timer: Timer) -> None:
        while not timer.stop.is_set():
            due = self._next_elapse(timer)
            now = time.monotonic()
            if due is None or due > now:
                timer.stop.wait(0.5 if due is None else min(0.5, due - now))
                continue
            timer.boot_fired = True
            self.start(timer.target)

    def _next_elapse(self, timer: Timer) -> float | None:
        candidates: list[float] = []
        on_boot = timer.unit.get("Timer", "OnBootSec")
        if on_boot and not timer.boot_fired:
            candidates.append(self.boot_time + unit_files.seconds(on_boot, 0))
        on_active = timer.unit.get("Timer", "OnUnitActiveSec")
        svc = self.services.get(timer.target)
        active_at = svc.last_activation if svc is not None else None
        if on_active and svc is not None and active_at is not None and svc.state != "activating":
            candidates.append(active_at + unit_files.seconds(on_active, 0))
        return min(candidates) if candidates else None

    # -- enablement, boot --

    def enable(self, name: str) -> list[str]:
        name = normalize(name)
        unit = unit_files.load(name)
        made = []
        for target in unit.words("Install", "WantedBy") + unit.words("Install", "RequiredBy"):
            wants = UNIT_DIR / f"{target}.wants"
            wants.mkdir(parents=True, exist_ok=True)
            link = wants / name
            if not link.is_symlink():
                link.symlink_to(unit.path)
                made.append(f"Created symlink {link} → {unit.path}.")
        return made

    def disable(self, name: str) -> None:
        for link in UNIT_DIR.glob(f"*.wants/{normalize(name)}"):
            link.unlink()

    def is_enabled(self, name: str) -> bool:
        return any(UNIT_DIR.glob(f"*.wants/{normalize(name)}"))

    def enabled_units(self) -> list[str]:
        names: list[str] = []
        for target in BOOT_TARGETS:
            wants = UNIT_DIR / f"{target}.wants"
            if wants.is_dir():
                names += sorted(p.name for p in wants.iterdir() if p.name not in names)
        return names

    def boot(self) -> None:
        """What systemd starts at boot: tmpfiles, then every enabled unit in dependency order."""
        self.run_tmpfiles()
        for name in boot_order(self.enabled_units()):
            self.start(name)

    def run_tmpfiles(self) -> None:
        configs = sorted(str(p) for p in Path("/etc/tmpfiles.d").glob("*.conf"))
        if not configs:
            return
        child = self.reaper.spawn(
            ["systemd-tmpfiles", "--create", *configs], {"PATH": DEFAULT_PATH}
        )
        if child.wait(START_TIMEOUT) != 0:
            self.journal.write(f"systemd-tmpfiles: failed on {' '.join(configs)}")

    def _set(self, svc: Service, state: str, result: str) -> None:
        if state != svc.state:
            self.journal.write(f"systemd: {svc.unit.name}: {svc.state} -> {state} ({result})")
        svc.state = state
        svc.result = result


def _signal_name(number: int) -> str:
    """As systemd's $EXIT_STATUS names it: KILL, TERM, ... (the number if it has no name)."""
    try:
        return signal.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return str(number)


def _first_failure(result: str, new: str) -> str:
    """systemd keeps a unit's first non-success result."""
    return new if result == "success" else result


def _pid_in(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 else None


def normalize(name: str) -> str:
    return name if "." in name else f"{name}.service"


def boot_order(names: list[str], search_path: Sequence[Path] = unit_files.SEARCH_PATH) -> list[str]:
    """Units with DefaultDependencies=no first, then an order that honours After=/Before=."""
    units: dict[str, Unit] = {}
    for name in names:
        with contextlib.suppress(UnitError):
            units[name] = unit_files.load(name, search_path)
    after: dict[str, set[str]] = {n: set() for n in units}
    for name, unit in units.items():
        after[name] |= {a for a in unit.words("Unit", "After") if a in units}
        for before in unit.words("Unit", "Before"):
            if before in units:
                after[before].add(name)
    early = [n for n, u in units.items() if u.get("Unit", "DefaultDependencies") == "no"]
    ordered: list[str] = []

    def visit(name: str, path: frozenset[str]) -> None:
        if name in ordered or name in path:
            return
        for dependency in sorted(after[name]):
            visit(dependency, path | {name})
        ordered.append(name)

    for name in early + sorted(units):
        visit(name, frozenset())
    return ordered
