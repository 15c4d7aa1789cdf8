"""`lxcexp bisect SOURCE --good REF --bad REF`: options, their checks, and the printed answer.

Every option is checked, and the host preflight run for the sessions' root, bridge and
subnet, before anything is built or created: a bad value is one line naming the option.
Exit status: 0 the first bad commit was named; 1 it was not (skips, --max-steps), or
there was nothing to bisect (bad not worse, can't tell at the endpoints); 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections.abc import Callable

from ..engine.build_lxc import BuildError, require_build_tools
from ..engine.config import ConfigError, build_config
from ..engine.experiment import Experiment
from ..engine.host import PreflightError
from ..report.verdict import DEFAULT_MIN_EFFECT, MIN_SAMPLES
from .driver import Bisection, BisectRefused, Plan, summary_lines
from .history import HistoryError, load_history
from .judge import BISECT_METRICS, MeasureError
from .runs import Builder, SessionOptions, SideBySide

AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]
# The session options a bisect passes through, by its own option name.
HOST_OPTIONS = {"root": "--ve-root", "bridge": "--ve-bridge", "subnet": "--ve-subnet"}


class UsageError(ValueError):
    pass


def _integer(option: str, text: str, low: int, why: str = "") -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a whole number") from None
    if value < low:
        raise UsageError(f"{option}: {value} is below {low}{why}")
    return value


def _percent(option: str, text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a percentage such as 5 or 5%") from None
    if not 0 < value < 100:
        raise UsageError(f"{option}: {value:g}% must be above 0 and below 100")
    return value


def _plan(args: argparse.Namespace) -> tuple[Plan, int, int]:
    if args.metric not in BISECT_METRICS:
        raise UsageError(
            f"--metric: {args.metric!r} is not a per-VE metric a run measures; one of {', '.join(BISECT_METRICS)}"
        )
    count = _integer("--count", args.count, MIN_SAMPLES)
    rounds = _integer("--rounds", args.rounds, 1)
    plan = Plan(
        metric=args.metric,
        min_effect=_percent("--min-effect", args.min_effect),
        max_rounds=_integer(
            "--max-rounds", args.max_rounds, rounds, " (--rounds: a run's rounds)" if rounds > 1 else ""
        ),
        max_steps=_integer("--max-steps", args.max_steps, 1),
    )
    return plan, count, rounds


def _host_options(args: argparse.Namespace, count: int) -> tuple[str, ...]:
    """--root/--bridge/--subnet as session options, checked by the experiment's own rules and preflight."""
    given = {name: getattr(args, name) for name in HOST_OPTIONS if getattr(args, name) is not None}
    try:
        config = build_config(count=2 * count, **given)
        Experiment(config).check()
    except ConfigError as error:
        short = next((f"--{n}" for n, o in HOST_OPTIONS.items() if o == error.option), error.option)
        raise UsageError(f"{short}: {error.reason}") from None
    except PreflightError as error:
        raise UsageError(f"host: {error}") from None
    return tuple(f"{HOST_OPTIONS[name]}={value}" for name, value in given.items())


def _directory(path: str | None) -> str:
    if path is None:
        return tempfile.mkdtemp(prefix="lxcexp-bisect-")
    path = os.path.abspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise UsageError(f"--dir: {path} exists and is not an empty directory")
    os.makedirs(path, exist_ok=True)
    return path


def cmd_bisect(args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        print(line, flush=True)

    try:
        plan, count, rounds = _plan(args)
        host_options = _host_options(args, count)
        history = load_history(args.source, args.good, args.bad)  # after the quick checks: it fetches a bundle
        require_build_tools()
        directory = _directory(args.dir)
    except (UsageError, HistoryError, BuildError) as error:
        print(f"lxcexp bisect: {error}", file=sys.stderr)
        return 2
    # Ctrl-C even when started in the background (a shell sets SIGINT ignored there): the
    # running session gets it passed on and takes itself down (runs.py).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    say(f"bisect: runs are kept in {directory}")
    builder = Builder(history.source, say)
    sessions = SideBySide(SessionOptions(count, directory, host_options, rounds), say)
    bisection = Bisection(history, plan, builder, sessions, say)
    try:
        result = bisection.run()
    except BisectRefused as error:
        print(f"lxcexp bisect: {error}", file=sys.stderr)
        return 1
    except MeasureError as error:
        print(f"lxcexp bisect: a run failed: {error}", file=sys.stderr)
        return 1
    finally:
        print(f"bisect: {builder.compiled} builds compiled, {bisection.rounds} side-by-side runs", flush=True)
    result.builds = builder.compiled
    for line in summary_lines(result, plan.metric):
        say(line)
    return 0 if result.first_bad is not None else 1


def add_command(add: AddCommand) -> None:
    bisect = add(
        "bisect",
        cmd_bisect,
        "find the first commit whose LXC build is worse than --good's: build midpoints, run each side by side "
        "with the good build, verdicts with statistics",
    )
    bisect.add_argument("source", metavar="SOURCE", help="a git tree or git bundle of LXC's source")
    bisect.add_argument("--good", required=True, help="a commit, tag or branch known good")
    bisect.add_argument("--bad", required=True, help="a later commit known bad (good must be its ancestor)")
    bisect.add_argument(
        "--metric",
        default="start_latency",
        help="what 'worse' is on: start_latency (start_p50 and the other percentiles name it), a phase "
        "(lxc_start_returned, running, workload_began, first_ping), or an outcome (completed, failed_to_start, ...)",
    )
    bisect.add_argument("--count", default="100", help="VEs per build in each run (default 100; at least 10)")
    bisect.add_argument(
        "--rounds", default="1", help="rounds per run (--ve-repeat; default 1): another run when the verdict can't tell"
    )
    bisect.add_argument(
        "--max-rounds", default="4", help="rounds per commit while the verdict is can't tell; then it is skipped (4)"
    )
    bisect.add_argument("--max-steps", default="20", help="midpoints tried at most (default 20)")
    bisect.add_argument(
        "--min-effect",
        default=str(DEFAULT_MIN_EFFECT),
        help=f"N%%: the endpoints' minimum effect, the least a midpoint is held to (default {DEFAULT_MIN_EFFECT:g})",
    )
    bisect.add_argument("--dir", default=None, help="keep each run here (default: a new lxcexp-bisect-* in /tmp)")
    bisect.add_argument("--root", default=None, help="the runs' --ve-root (default /exp)")
    bisect.add_argument("--bridge", default=None, help="the runs' --ve-bridge (default vebr)")
    bisect.add_argument("--subnet", default=None, help="the runs' --ve-subnet (default 10.213.0.0/16)")
