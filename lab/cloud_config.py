"""cloud-init's stand-in inside a lab droplet: runs a `#cloud-config` the way cloud-init would.

Modules run in the order of cloud-init's own cloud.cfg (init: bootcmd, write_files,
users_groups; config: runcmd; final: package_update_upgrade_install, write_files_deferred,
scripts_user), each at cloud-init's frequency: bootcmd every boot, the others once per
instance, with semaphores under /var/lib/cloud/instances/<id>/sem like cloud-init's.
What cannot run here is replaced, and each replacement is said once, at boot.
"""

from __future__ import annotations

import base64
import grp
import gzip
import os
import pwd
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import systemctl
from lab.journal import Journal
from lab.reaper import Child, Reaper
from lab.service_manager import DEFAULT_PATH, Manager

CLOUD_DIR = Path("/var/lib/cloud")
SHIM_DIR = Path("/run/lab/bin")
COMMAND_TIMEOUT = 120.0
SUPPORTED = {
    "bootcmd",
    "write_files",
    "users",
    "groups",
    "runcmd",
    "packages",
    "package_update",
    "package_upgrade",
}
# Packages whose programs the lab takes from the host, by the program that proves them there.
HOST_PROGRAMS = {
    "nginx": "/usr/sbin/nginx",
    "nginx-light": "/usr/sbin/nginx",
    "nftables": "/usr/sbin/nft",
    "curl": "/usr/bin/curl",
    "python3": "/usr/bin/python3",
    "iproute2": "/usr/sbin/ip",
}

Say = Callable[[str], None]


@dataclass(frozen=True)
class KeepalivedBuild:
    """`make install` output of the project's build script on Debian's tarball."""

    version: str
    sha256: str
    root: Path


class CloudInit:
    def __init__(
        self,
        document: dict[str, Any],
        instance_id: str,
        *,
        manager: Manager,
        reaper: Reaper,
        journal: Journal,
        builds: list[KeepalivedBuild],
        say: Say,
    ) -> None:
        self.doc = document
        self.manager = manager
        self.reaper = reaper
        self.journal = journal
        self.builds = builds
        self.say = say
        self.instance = CLOUD_DIR / "instances" / instance_id
        self.failures: list[str] = []

    # -- stages --

    def init_stage(self) -> None:
        self.instance.joinpath("sem").mkdir(parents=True, exist_ok=True)
        link = CLOUD_DIR / "instance"
        if not link.is_symlink():
            link.symlink_to(self.instance)
        for key in sorted(set(self.doc) - SUPPORTED):
            self.say(f"cloud-config key {key!r} is not run by the lab; skipped")
        self._always("bootcmd", self.bootcmd)
        self._once("write_files", lambda: self.write_files(deferred=False))
        self._once("users_groups", self.users_groups)

    def config_stage(self) -> None:
        self._once("runcmd", self.write_runcmd)

    def final_stage(self) -> None:
        self._once("package_update_upgrade_install", self.packages)
        self._once("write_files_deferred", lambda: self.write_files(deferred=True))
        self._once("scripts_user", self.scripts_user)

    def _once(self, module: str, action: Callable[[], None]) -> None:
        sem = self.instance / "sem" / f"config_{module}"
        if sem.exists():
            return
        self._always(module, action)
        sem.write_text("ran\n")

    def _always(self, module: str, action: Callable[[], None]) -> None:
        try:
            action()
        except (OSError, KeyError, ValueError, subprocess.SubprocessError) as error:
            self.failures.append(f"{module}: {error}")
            self.say(f"cloud-init module {module} failed: {error}")

    # -- modules --

    def bootcmd(self) -> None:
        commands = self.doc.get("bootcmd") or []
        if not commands:
            return
        if any(_words(c)[:1] == ["cloud-init-per"] for c in commands):
            self.say(
                "bootcmd: cloud-init-per is the host's own script; its semaphores live in "
                "this droplet's /var/lib/cloud/sem, so `once` means once per droplet"
            )
        script = self.instance / "bootcmd"
        script.write_text("#!/bin/sh\n" + shellify(commands))
        code = self._run(["/bin/sh", str(script)], {"INSTANCE_ID": self.instance.name})
        if code != 0:
            raise ValueError(f"bootcmd exited {code}; see the droplet's journal")

    def write_files(self, deferred: bool) -> None:
        for entry in self.doc.get("write_files") or []:
            if bool(entry.get("defer", False)) == deferred:
                write_file(entry)

    def users_groups(self) -> None:
        for group in self.doc.get("groups") or []:
            name = group if isinstance(group, str) else next(iter(group))
            if not _exists(grp.getgrnam, name):
                self._checked(["groupadd", name])
        for user in self.doc.get("users") or []:
            if user == "default":
                self.say("users: `default` (the image's login user) is not created in the lab")
                continue
            entry = {"name": user} if isinstance(user, str) else dict(user)
            if _exists(pwd.getpwnam, entry["name"]):
                continue
            self._checked(useradd_argv(entry))

    def packages(self) -> None:
        # Here, not at the top: cloudinit.boot brings in the Pulumi SDK (about 0.2 s), and only
        # a droplet's first boot installs packages.
        from cloudinit.boot import BUILD_PACKAGES

        wanted = [str(p) for p in self.doc.get("packages") or []]
        if not wanted and not self.doc.get("package_update"):
            return
        taken = [p for p in wanted if p in HOST_PROGRAMS and Path(HOST_PROGRAMS[p]).exists()]
        missing = [p for p in wanted if p in HOST_PROGRAMS and p not in taken]
        skipped = [p for p in wanted if p in BUILD_PACKAGES]
        others = [p for p in wanted if p not in HOST_PROGRAMS and p not in BUILD_PACKAGES]
        self.say(
            "packages: apt is replaced; the droplet uses the host's "
            + (", ".join(taken) or "nothing")
            + (
                f"; build deps not needed ({len(skipped)}): keepalived is prebuilt"
                if skipped
                else ""
            )
        )
        if missing:
            raise ValueError(
                f"the host lacks {', '.join(missing)}; install them (make system-packages)"
            )
        if "keepalived" in others:
            others.remove("keepalived")
            self.say("packages: keepalived -> the project's build (never the host's package)")
            self.install_keepalived(self.builds[0])
        for package in others:
            self.say(f"packages: {package} is not provided by the lab; skipped")
        if "nginx" in taken or "nginx-light" in taken:
            # Debian's postinst enables and starts nginx with its default site.
            self.manager.enable("nginx.service")
            self.manager.start("nginx.service")

    def write_runcmd(self) -> None:
        commands = self.doc.get("runcmd") or []
        scripts = self.instance / "scripts"
        scripts.mkdir(parents=True, exist_ok=True)
        (scripts / "runcmd").write_text("#!/bin/sh\n" + shellify(commands))
        (scripts / "runcmd").chmod(0o700)

    def scripts_user(self) -> None:
        """runcmd, one command at a time, going on after a failure as its shell script would."""
        for command in self.doc.get("runcmd") or []:
            code = self.run_command(command)
            if code != 0:
                self.failures.append(f"runcmd: {_show(command)} exited {code}")
                self.say(f"runcmd: {_show(command)} exited {code}")

    # -- runcmd's commands and their replacements --

    def run_command(self, command: str | list[str]) -> int:
        if isinstance(command, str):
            return self._run(["/bin/sh", "-c", command])
        argv = [str(a) for a in command]
        name = os.path.basename(argv[0])
        if name == "systemctl":
            code, output = systemctl.run(self.manager, argv[1:])
            if output:
                self.journal.write(f"systemctl: {output}")
            return code
        if name == "build-keepalived" and len(argv) == 4:
            return self._build_keepalived(*argv[1:])
        if name in ("apt", "apt-get"):
            self.say(f"runcmd: {_show(argv)} skipped: apt is replaced by the host's packages")
            return 0
        return self._run(argv)

    def _build_keepalived(self, url: str, sha256: str, version: str) -> int:
        build = next((b for b in self.builds if (b.version, b.sha256) == (version, sha256)), None)
        if build is None:
            self.say(
                f"build-keepalived: no lab build of keepalived {version} with sha256 {sha256}; "
                f"build it first: python -m lab.keepalived_source --version {version} "
                f"--sha256 {sha256}"
            )
            return 1
        self.say(
            f"build-keepalived: download of {url} and build replaced by the project's build "
            f"of keepalived {version} from Debian's tarball (same sha256 {sha256[:12]}...)"
        )
        self.install_keepalived(build)
        return 0

    def install_keepalived(self, build: KeepalivedBuild) -> None:
        """Copy the build's DESTDIR into /, following /lib -> usr/lib as `make install` does."""
        for source in sorted(build.root.rglob("*")):
            relative = source.relative_to(build.root)
            if relative.name == ".ha-web-build" or (source.is_dir() and not source.is_symlink()):
                continue
            target = Path("/") / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                target.unlink(missing_ok=True)
                target.symlink_to(os.readlink(source))
            else:
                shutil.copy2(source, target)
        self.manager.daemon_reload()

    # -- processes --

    def _run(self, argv: list[str], extra_env: dict[str, str] | None = None) -> int:
        env = {"PATH": f"{SHIM_DIR}:{DEFAULT_PATH}", "LANG": "C.UTF-8", "HOME": "/root"}
        child = self.reaper.spawn(argv, env | (extra_env or {}))
        # A daemon started by the command may keep the pipe open: read it aside, do not wait on it.
        reader = threading.Thread(target=self._log, args=(child,), daemon=True)
        reader.start()
        code = child.wait(COMMAND_TIMEOUT)
        reader.join(1.0)
        return -1 if code is None else code

    def _log(self, child: Child) -> None:
        if child.stdout is None:
            return
        for raw in child.stdout:
            self.journal.write(f"cloud-init[{child.pid}]: {raw.decode('utf-8', 'replace')}")

    def _checked(self, argv: list[str]) -> None:
        code = self._run(argv)
        if code != 0:
            raise ValueError(f"{shlex.join(argv)} exited {code}")


def shellify(commands: list[Any]) -> str:
    """cloud-init's util.shellify: lists are quoted word by word, strings kept as written."""
    lines = [c if isinstance(c, str) else shlex.join(str(w) for w in c) for c in commands]
    return "".join(f"{line}\n" for line in lines)


def useradd_argv(entry: dict[str, Any]) -> list[str]:
    """The useradd call cloud-init's distro.add_user makes for these keys."""
    argv = ["useradd", str(entry["name"])]
    options = {
        "gecos": "--comment",
        "homedir": "--home",
        "primary_group": "--gid",
        "uid": "--uid",
        "shell": "--shell",
    }
    for key, flag in options.items():
        if entry.get(key) is not None:
            argv += [flag, str(entry[key])]
    groups = entry.get("groups")
    if groups:
        argv += ["--groups", groups if isinstance(groups, str) else ",".join(groups)]
    flags = {"system": "--system", "no_create_home": "-M", "no_user_group": "-N"}
    argv += [flag for key, flag in flags.items() if entry.get(key)]
    return argv


def write_file(entry: dict[str, Any]) -> None:
    path = Path(str(entry["path"]))
    data = decode(entry.get("content", ""), str(entry.get("encoding", "text/plain")))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab" if entry.get("append") else "wb") as handle:
        handle.write(data)
    permissions = entry.get("permissions", "0644")
    os.chmod(path, int(str(permissions), 8))
    user, _, group = str(entry.get("owner", "root:root")).partition(":")
    os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group or user).gr_gid)


def decode(content: str, encoding: str) -> bytes:
    kind = encoding.lower()
    if kind in ("b64", "base64"):
        return base64.b64decode(content)
    if kind in ("gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
        return gzip.decompress(base64.b64decode(content))
    return str(content).encode()


def _exists(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def _words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command]


def _show(command: str | list[str]) -> str:
    return command if isinstance(command, str) else shlex.join(str(w) for w in command)
