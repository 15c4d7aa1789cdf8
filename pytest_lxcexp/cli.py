"""`lxcexp`: the original scripts' steps, by hand, over the same engine as the plugin.

lxcexp createbase                 build (or --refresh) the cached busybox base
lxcexp setup N                    tmpfs, base, bridge, ve1..veN clones
lxcexp start [S] [E]              start veS..veE (default: all)
lxcexp info [S] [E]               state, PID and address of each VE
lxcexp stats [S] [E]              the Results block for veS..veE
lxcexp takedown                   stop everything, remove it all
lxcexp report DIR                 rebuild DIR/index.html over the runs saved with --ve-report-dir
lxcexp compare A [B] [--fail M]   verdicts: saved run B against A, or run A's builds; exit 1 on "worse"
lxcexp build-lxc SOURCE [--ref REF] [--prefix DIR]
                                  build LXC from a git tree, bundle or tarball (cached per
                                  commit); prints the prefix, for --ve-lxc
lxcexp bisect SOURCE --good REF --bad REF [--metric M]
                                  the first commit whose build is worse than good's: midpoints
                                  built and run side by side with the good build
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence

from .bisect.command import add_command as add_bisect_command
from .engine import base, build_lxc, storage
from .engine.builds import BuildProofError
from .engine.config import ConfigError, ExperimentConfig, build_config, parse_range, parse_root, root_tag
from .engine.experiment import Experiment
from .engine.host import PreflightError, require_root
from .engine.stats import results_block, timings_lines
from .engine.storage import human_size
from .engine.takedown import leftovers, takedown
from .options import FLAGS, LISTS, OPTIONS, build_config_values
from .report.commands import add_commands as add_report_commands


class CliError(Exception):
    """A usage or runtime error to print as one line, with an exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _cli_option(option: str) -> str:
    """The CLI takes the count as its argument N; every other option has the plugin's name."""
    return "N" if option == "--ve-count" else option


def _add_experiment_options(parser: argparse.ArgumentParser) -> None:
    """The plugin's option table, with the same names, defaults and help; each also under its
    short name without "ve-" (--root for --ve-root), as typed by hand."""
    for option, name, _, help_text in OPTIONS:
        if option != "--ve-count":
            parser.add_argument(
                option, "--" + option.removeprefix("--ve-"), dest=name, metavar="VALUE", default=None, help=help_text
            )
    for option, name, help_text in FLAGS:
        parser.add_argument(option, "--" + option.removeprefix("--ve-"), dest=name, action="store_true", help=help_text)
    for option, name, help_text in LISTS:
        parser.add_argument(
            option, "--" + option.removeprefix("--ve-"), dest=name, metavar="VALUE", action="append", help=help_text
        )


def _attach(root: str) -> Experiment:
    try:
        return Experiment.attach(parse_root("--ve-root", root), progress=print)
    except ConfigError as error:
        raise CliError(f"{_cli_option(error.option)}: {error.reason}") from None


def _range(args: argparse.Namespace, config: ExperimentConfig) -> tuple[int, int]:
    try:
        return parse_range("S E", args.first, args.last, config.ve_last, config.ve_first)
    except ConfigError as error:
        raise CliError(str(error)) from None


def cmd_createbase(args: argparse.Namespace) -> int:
    names = {"--ve-base-release": "--release", "--ve-mirror": "--mirror", "--ve-busybox": "--busybox"}
    try:
        if args.base == "debian":
            # Build (or reuse) the cached tarball ahead of a run, e.g. once in CI.
            config = build_config(base="debian", base_release=args.release, mirror=args.mirror)
            path = base.cached_debian_tarball(args.cache, config.base_release, config.mirror, args.refresh, print)
        else:
            busybox = os.path.abspath(args.busybox) if args.busybox else ""
            path = base.cached_busybox_base(args.cache, refresh=args.refresh, busybox=busybox)
    except ConfigError as error:
        raise CliError(f"{names.get(error.option, error.option)}: {error.reason}") from None
    print(f"base: {path}")
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    values = build_config_values(lambda name: getattr(args, name, None))  # the count is N, below
    try:
        config = build_config(**(values | {"count": args.count}))
    except ConfigError as error:
        raise CliError(f"{_cli_option(error.option)}: {error.reason}") from None
    if config.ramp:
        # A ramp sets up as it goes and measures each step: it is a pytest run, not a setup.
        raise CliError("N: max (a ramp) runs under pytest: pytest --ve-count=max")
    if config.repeat > 1:
        # Rounds are set up, run and taken down in turn: only a session runs them.
        raise CliError(
            f"--ve-repeat: setup sets one experiment up; rounds run under pytest: pytest --ve-repeat={config.repeat}"
        )
    experiment = Experiment(config, progress=print)
    try:
        stale = experiment.check()
    except ConfigError as error:
        raise CliError(f"{_cli_option(error.option)}: {error.reason}") from None
    if stale:
        raise CliError(
            f"--ve-root: {config.root} already holds an experiment (pid {stale.get('pid')}); "
            f"take it down first: lxcexp takedown --root {config.root}"
        )
    experiment.lock()
    try:
        experiment.setup()
    except BaseException:
        experiment.takedown()
        raise
    finally:
        experiment.unlock()
    print(
        f"set up {config.count} VEs in {config.root}"
        + (f" on bridge {config.bridge}" if config.network == "bridge" else "")
    )
    for line in timings_lines(experiment.timings, experiment.summary([])):
        print(line)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    experiment = _attach(args.root)
    first, last = _range(args, experiment.config)
    experiment.lock()
    try:
        results = experiment.start(first, last)
    except BuildProofError as error:
        root = experiment.config.root
        raise CliError(f"--ve-lxc: {error.reason} (take it down: lxcexp takedown --root {root})") from None
    finally:
        experiment.end_running_watch()  # the RUNNING phases of this call's starts, recorded in the root
        experiment.unlock()
    failed = [result for result in results if not result.ok]
    for result in failed:
        print(f"ve{result.index}: failed to start: {result.error}", file=sys.stderr)
    latencies = sorted(result.latency for result in results if result.ok)
    if latencies:
        median_ms = latencies[len(latencies) // 2] * 1000
        print(f"started {len(latencies)} of {len(results)} VEs; median start {median_ms:.1f} ms")
    return 1 if failed else 0


def cmd_info(args: argparse.Namespace) -> int:
    experiment = _attach(args.root)
    first, last = _range(args, experiment.config)
    print(f"{'NAME':<10} {'STATE':<10} {'PID':>8} {'PINGS':>7}  {'ADDRESS':<16} REASON")
    for record in experiment.records(first, last):
        pid = record.pid if record.pid is not None else "-"
        print(
            f"{record.name:<10} {record.state:<10} {pid:>8} {record.pings:>7}  "
            f"{record.address or '-':<16} {record.failure or ''}"
        )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    experiment = _attach(args.root)
    first, last = _range(args, experiment.config)
    summary = experiment.summary(experiment.records(first, last))
    for line in results_block(summary, human_size(summary.disk_used)):
        print(line)
    return 0


def cmd_takedown(args: argparse.Namespace) -> int:
    root = parse_root("--ve-root", args.root)
    marker = storage.read_marker(root)
    if marker is not None:
        config = ExperimentConfig.from_dict(marker["config"])
        bridge = config.bridge if config.network == "bridge" else None
    else:
        bridge = args.bridge
    lock = storage.RunLock(root)
    try:
        lock.acquire()
    except storage.RootError as error:
        raise CliError(f"--ve-root: {error}", status=1) from None
    try:
        report = takedown(root, root_tag(root), bridge)
    finally:
        lock.release()
    left = leftovers(root, root_tag(root), bridge)
    print(
        f"takedown of {root}: {report.stopped} VEs stopped, {report.killed} processes killed, "
        f"{len(report.unmounted)} unmounted, bridge {'deleted' if report.bridge_deleted else 'not present'}"
    )
    print(f"  steps: {report.steps_text()}")
    if left:
        print(f"LEFT BEHIND: {', '.join(left)}", file=sys.stderr)
        return 1
    return 0


def cmd_build_lxc(args: argparse.Namespace) -> int:
    try:
        prefix = build_lxc.build_lxc(
            args.source, args.ref, args.prefix, progress=lambda line: print(line, file=sys.stderr, flush=True)
        )
    except build_lxc.BuildError as error:
        raise CliError(str(error), status=1) from None
    print(prefix)
    return 0


def _add_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("first", nargs="?", metavar="S", help="first VE number (default 1)")
    parser.add_argument("last", nargs="?", metavar="E", help="last VE number (default: the count)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lxcexp", description="Container-density experiments with LXC, by hand.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        commands[name] = handler
        return command

    createbase = add("createbase", cmd_createbase, "build the cached busybox (or debian) base image")
    createbase.add_argument("--refresh", action="store_true", help="rebuild it even if cached")
    createbase.add_argument("--base", choices=("busybox", "debian"), default="busybox", help="which base")
    createbase.add_argument("--release", default="", help="debian: release codename (default: the host's)")
    createbase.add_argument("--mirror", default="", help="debian: mirror URL (default: the host's apt mirror)")
    createbase.add_argument("--cache", default=ExperimentConfig.base_cache, help="cache directory")
    createbase.add_argument("--busybox", default="", help="busybox: the static binary (default: the host's)")

    setup = add("setup", cmd_setup, "mount the tmpfs, install the base, create the bridge and N clones")
    setup.add_argument("count", metavar="N", help="number of VEs")
    _add_experiment_options(setup)

    for name, handler, help_text in (
        ("start", cmd_start, "start veS..veE"),
        ("info", cmd_info, "state, PID, pings and address of veS..veE"),
        ("stats", cmd_stats, "the Results block for veS..veE"),
    ):
        command = add(name, handler, help_text)
        _add_range(command)
        command.add_argument("--ve-root", "--root", dest="root", default="/exp", help="experiment root (default /exp)")

    down = add("takedown", cmd_takedown, "stop every VE and remove the experiment (safe to repeat)")
    down.add_argument("--ve-root", "--root", dest="root", default="/exp", help="experiment root (default /exp)")
    down.add_argument(
        "--ve-bridge", "--bridge", dest="bridge", default=None, help="bridge to delete when the root has no marker left"
    )
    built = add("build-lxc", cmd_build_lxc, "build LXC from source with meson into a prefix, cached per commit")
    built.add_argument("source", metavar="SOURCE", help="a git tree, git bundle or tarball of LXC's source")
    built.add_argument("--ref", default=None, help="the commit, tag or branch to build (default HEAD)")
    built.add_argument("--prefix", default=None, help=f"install here (default {build_lxc.CACHE}/<commit>)")
    add_report_commands(add)
    add_bisect_command(add)
    return parser


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM as Ctrl-C: `setup` then takes down what it made instead of dying halfway.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if getattr(args, "needs_root", True):  # report/compare only read saved files
            require_root()
        return args.handler(args)
    except KeyboardInterrupt as error:
        root = getattr(args, "root", None)
        hint = f"; if anything is left: lxcexp takedown --root {root}" if root else ""
        print(f"lxcexp {args.command}: interrupted ({error or 'SIGINT'}){hint}", file=sys.stderr)
        return 130
    except CliError as error:
        print(f"lxcexp {args.command}: {error}", file=sys.stderr)
        return error.status
    except ConfigError as error:
        print(f"lxcexp {args.command}: {_cli_option(error.option)}: {error.reason}", file=sys.stderr)
        return 2
    except (PreflightError, RuntimeError, OSError) as error:
        print(f"lxcexp {args.command}: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
