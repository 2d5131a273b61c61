"""`python -m lab`: the local lab.

drill                 boot the dev stack, run the failover scenarios, print and write the report
run --user-data F...  the same drill with your own #cloud-config files
bench                 time each fault over many runs (action latency 0) into bench-report/
up / down             keep a lab running to poke at; tear it down (from any shell)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from lab import bench_report
from lab.bench import SCENARIOS as BENCH_SCENARIOS
from lab.bench import run_bench
from lab.cluster import Lab, LabError
from lab.droplet import REPO, DropletError
from lab.keepalived_source import KeepalivedSourceError
from lab.nspawn import NspawnError
from lab.plot import plot_timeline
from lab.report import render_timeline, table, timeline, write_json
from lab.rootfs import RootfsError
from lab.scenarios import SCENARIOS, Result
from lab.spec import LabSpec, SpecError, from_stack, from_user_data
from lab.state import LAB_ROOT, LabState, saved_labs, tear_down
from lab.topology import API_IP, METADATA_IP

DEFAULT_LATENCY = 2.0
DEFAULT_RUNS = 10
UP_TIMEOUT = 180.0


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the lab like Ctrl-C: through its clean-up, not around it."""

    def stop(signum: int, _: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def _need_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit(
            "the lab needs root: it makes network namespaces, mounts and nftables rules. "
            "Run it as root (sudo make lab)."
        )


def drill(spec: LabSpec, latency: float, report_dir: Path, quiet: bool) -> int:
    echo = (lambda _: None) if quiet else print
    print(f"lab: deploying {spec.source}: {', '.join(d.name for d in spec.droplets)}")
    with Lab(spec, latency, echo) as lab:
        start = time.time()
        print(f"lab: the client polls http://{spec.reserved_ip}/ every 50 ms")
        results: list[Result] = []
        for scenario in SCENARIOS:
            try:
                results.append(scenario(lab))
            except (LabError, DropletError) as error:
                print(f"lab: {scenario.__name__} could not run: {error}", file=sys.stderr)
                break
            print(f"lab: {results[-1].title}: done")
        lines = timeline(lab, start)
        print("\nTimeline\n" + render_timeline(lines, start))
        print(f"\nDrill (emulated action latency {latency:.1f} s)\n" + table(results))
        write_json(report_dir / "report.json", lab, results, lines, start)
        plot_timeline(
            report_dir / "timeline.png", lab.samples(start), results, list(lab.droplets), start
        )
        for droplet in lab.droplets.values():
            journal = report_dir / "journals" / f"{droplet.name}.log"
            journal.parent.mkdir(parents=True, exist_ok=True)
            journal.write_text(droplet.journal(), encoding="utf-8")
        print(f"\nlab: wrote {report_dir / 'report.json'}, {report_dir / 'timeline.png'}")
        print(f"lab: each droplet's journal is in {report_dir / 'journals'}")
    print("lab: torn down")
    return 0 if len(results) == len(SCENARIOS) and all(r.ok for r in results) else 1


def bench(spec: LabSpec, args: argparse.Namespace) -> int:
    chosen = [s for s in BENCH_SCENARIOS if not args.scenario or s.key in args.scenario]
    command = f"python -m lab bench --runs {args.runs} --latency {args.latency:g}"
    command += f" --stack {args.stack}" + "".join(f" --scenario {k}" for k in args.scenario or [])
    print(
        f"lab: benchmark of {spec.source}: {args.runs} run(s) of {len(chosen)} scenario(s), "
        f"emulated action latency {args.latency:g} s"
    )
    echo = print if args.verbose else (lambda _: None)
    with Lab(spec, args.latency, echo) as lab:
        started = time.time()
        lab.wait_serving(spec.primary, UP_TIMEOUT)
        results = run_bench(lab, args.runs, chosen)
        print(
            f"\nBenchmark ({args.runs} runs per scenario, emulated action latency "
            f"{args.latency:g} s; median / p90 / max)\n" + bench_report.table(results)
        )
        print(bench_report.LEGEND)
        print("\nWhere the time goes\n" + bench_report.path_table(results))
        print("\nTargets (medians)\n" + bench_report.targets_table(results))
        problems = bench_report.problems(results)
        for problem in problems:
            print(f"lab: problem in {problem}", file=sys.stderr)
        report = args.report_dir / "bench.json"
        bench_report.write_json(report, lab, results, command, started)
        for droplet in lab.droplets.values():
            journal = args.report_dir / "journals" / f"{droplet.name}.log"
            journal.parent.mkdir(parents=True, exist_ok=True)
            journal.write_text(droplet.journal(), encoding="utf-8")
        print(f"\nlab: wrote {report} and the droplets' journals in {args.report_dir / 'journals'}")
    print("lab: torn down")
    return 1 if problems else 0


def hints(lab: Lab) -> list[str]:
    client = lab.topology.client
    lines = [
        f"reserved IP {lab.spec.reserved_ip} is on {lab.holder() or 'nobody yet'}",
        f"curl it:        ip netns exec {client} curl -si http://{lab.spec.reserved_ip}/",
        f"the emulator:   ip netns exec {client} curl -s http://{API_IP}/_lab/state",
        f"                (faults, token, latency: see ADMIN_ROUTES in lab/emulator.py; "
        f"metadata at http://{METADATA_IP})",
    ]
    for droplet in lab.droplets.values():
        lines += [
            f"{droplet.name}: a shell inside: nsenter -t {droplet.init_pid} -a bash -l",
            f"    systemctl:  nsenter -t {droplet.init_pid} -a systemctl status nginx keepalived",
            f"    journal:    nsenter -t {droplet.init_pid} -a journalctl -u ha-web-agent -e",
            f"    its disk:   {droplet.root} (its changes over the image)",
        ]
    lines.append("tear it down:   make lab-down (python -m lab down)")
    return lines


def serve(spec: LabSpec, latency: float) -> int:
    """The process behind `up`: runs the lab until `down` sends SIGTERM."""
    with Lab(spec, latency, print) as lab:
        lab.wait_serving(spec.primary, latency + 60)
        lab.state.hints = hints(lab)
        lab.state.ready = True
        lab.state.save()
        print("lab: up", flush=True)
        while True:
            time.sleep(3600)


def up(args: argparse.Namespace) -> int:
    if saved_labs():
        print("lab: a lab is already up; `make lab-down` first.", file=sys.stderr)
        return 1
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    log = LAB_ROOT / "up.log"
    argv = [sys.executable, "-m", "lab", "serve", "--stack", args.stack]
    argv += ["--latency", str(args.latency)]
    for path in args.user_data or []:
        argv += ["--user-data", str(Path(path).resolve())]
    with log.open("w") as out:
        process = subprocess.Popen(
            argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        ready = [s for s in saved_labs() if s.ready and s.owner[0] == process.pid]
        if ready:
            print("lab: up. " + "\n  ".join(["", *ready[0].hints]))
            return 0
        if process.poll() is not None:
            print(f"lab: up failed (exit {process.returncode}); see {log}:", file=sys.stderr)
            print(log.read_text()[-3000:], file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"lab: not up after {UP_TIMEOUT:.0f} s; see {log}. Tearing down.", file=sys.stderr)
    down()
    return 1


def down() -> int:
    states: list[LabState] = saved_labs()
    (LAB_ROOT / "up.log").unlink(missing_ok=True)
    if not states:
        print("lab: no lab is up.")
    for state in states:
        for line in tear_down(state):
            print(f"lab: {line}")
        print(f"lab: {state.prefix} torn down")
    return 0


def spec_from(args: argparse.Namespace) -> LabSpec:
    if getattr(args, "user_data", None):
        return from_user_data([Path(p) for p in args.user_data])
    return from_stack(args.stack)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("drill", "run the failover drill on a stack (default dev)"),
        ("run", "run the drill on your own #cloud-config files"),
        ("up", "start a lab and leave it running"),
        ("serve", argparse.SUPPRESS),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--stack", default="dev", help="Pulumi stack to deploy (default dev)")
        sub.add_argument(
            "--latency",
            type=float,
            default=DEFAULT_LATENCY,
            help=f"seconds an emulated action takes (default {DEFAULT_LATENCY})",
        )
        sub.add_argument(
            "--user-data", nargs="+", required=name == "run", metavar="FILE",
            help="#cloud-config files, one per droplet, instead of the stack",
        )  # fmt: skip
        sub.add_argument("--report-dir", type=Path, default=REPO / "lab-report")
        sub.add_argument("--quiet", action="store_true", help="do not echo droplet boot lines")
    timing = commands.add_parser("bench", help="time each fault over many runs")
    timing.add_argument("--stack", default="dev", help="Pulumi stack to deploy (default dev)")
    timing.add_argument(
        "--runs", type=_positive, default=DEFAULT_RUNS,
        help=f"runs of each scenario (default {DEFAULT_RUNS})",
    )  # fmt: skip
    timing.add_argument(
        "--latency", type=float, default=0.0,
        help="seconds an emulated action takes (default 0: measure what ha-web controls)",
    )  # fmt: skip
    timing.add_argument(
        "--scenario", action="append", choices=[s.key for s in BENCH_SCENARIOS],
        help="run only this scenario (repeatable; default all)",
    )  # fmt: skip
    timing.add_argument("--report-dir", type=Path, default=REPO / "bench-report")
    timing.add_argument("--verbose", action="store_true", help="echo droplet boot lines")
    commands.add_parser("down", help="tear down a lab started with up (from any shell)")
    return parser.parse_args(argv)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of runs, 1 or more")
    return number


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _need_root()
    _stop_on_signals()
    try:
        if args.command == "down":
            return down()
        if args.command == "up":
            return up(args)
        spec = spec_from(args)
        if args.command == "serve":
            return serve(spec, args.latency)
        if args.command == "bench":
            return bench(spec, args)
        return drill(spec, args.latency, args.report_dir, args.quiet)
    except (
        SpecError,
        LabError,
        DropletError,
        KeepalivedSourceError,
        NspawnError,
        RootfsError,
    ) as error:
        print(f"lab: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
