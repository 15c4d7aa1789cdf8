"""The real builds and rounds of a bisection: `build-lxc` per commit, and pytest sessions side by side.

A run is one pytest session of the built-in ping suite with two builds interleaved,
`--ve-lxc good=PREFIX --ve-lxc candidate=PREFIX`, of `--rounds` rounds (`--ve-repeat`:
each round its own set up, starts and takedown, the first build alternating), archived
with --ve-report-dir; its results.json gives every VE's record of every round. Which
build starts ve1 alternates from round to round across runs too. Each session is a full
experiment with its own set up and takedown: the bisect holds no host object of its own,
so Ctrl-C (or SIGTERM) is handed to the running session, which takes itself down, and the
bisect waits for it before it ends.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from ..engine.build_lxc import CACHE, build_lxc
from .history import Commit
from .judge import CANDIDATE_NAME, GOOD_NAME, VE, Measure, MeasureError

# What each VE does: a few quick pings, so a round is about its starts, not its workload.
WORKLOAD = ("--ve-pings=3", "--ve-ping-interval=0.2")


class Builder:
    """build(commit) for the driver: build-lxc from the bisected SOURCE, counting real compilations."""

    def __init__(self, source: str, say: Callable[[str], None], cache: str = CACHE) -> None:
        self.source = source
        self.say = say
        self.cache = cache
        self.compiled = 0

    def __call__(self, commit: Commit) -> str:
        lines: list[str] = []

        def progress(line: str) -> None:
            lines.append(line)
            self.say(line)

        prefix = build_lxc(self.source, commit.sha, cache=self.cache, progress=progress)
        if not any("is built already" in line for line in lines):
            self.compiled += 1
        return prefix


@dataclass(frozen=True)
class SessionOptions:
    count: int  # VEs per build
    directory: str  # each run is archived under it
    host_options: tuple[str, ...] = ()  # --ve-root, --ve-bridge, --ve-subnet as given
    rounds: int = 1  # rounds per run (--ve-repeat)


def round_command(options: SessionOptions, builds: list[tuple[str, str]], report_dir: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "--ve-suite=ping",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--ve-count={2 * options.count}",
        *WORKLOAD,
        *([f"--ve-repeat={options.rounds}"] if options.rounds > 1 else []),
        *(f"--ve-lxc={name}={prefix}" for name, prefix in builds),
        f"--ve-report-dir={report_dir}",
        *options.host_options,
    ]


def run_session(command: list[str], cwd: str, log: str) -> int:
    """One session to its end. It has a process group of its own, so a terminal's Ctrl-C reaches
    only the bisect, which passes one SIGINT on and waits for the session's takedown."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return process.wait()
        except BaseException:
            process.send_signal(signal.SIGINT)
            process.wait()
            raise


def _tail(path: str, lines: int = 8) -> str:
    try:
        with open(path) as handle:
            return " | ".join(line.rstrip() for line in handle.readlines()[-lines:])
    except OSError:
        return ""


class SideBySide:
    """sessions(good_prefix, candidate_prefix, label) for the driver: rounds of real sessions."""

    def __init__(self, options: SessionOptions, say: Callable[[str], None]) -> None:
        self.options = options
        self.say = say
        self.serial = 0

    def __call__(self, good_prefix: str, candidate_prefix: str, label: str) -> Measure:
        return lambda first_round: self.run(good_prefix, candidate_prefix, first_round)

    def run(self, good_prefix: str, candidate_prefix: str, first_round: int) -> list[VE]:
        """One session of --rounds rounds; its VEs' rounds (0-based in the session) numbered on from first_round."""
        self.serial += 1
        builds = [(GOOD_NAME, good_prefix), (CANDIDATE_NAME, candidate_prefix)]
        if first_round % 2 == 0:
            builds.reverse()  # the candidate starts ve1 in even rounds, as --ve-repeat alternates within a run
        run_dir = os.path.join(self.options.directory, f"run{self.serial:03d}")
        os.makedirs(run_dir)
        log = os.path.join(run_dir, "session.log")
        status = run_session(round_command(self.options, builds, run_dir), run_dir, log)
        found = glob.glob(os.path.join(run_dir, "*", "results.json"))
        if not found:
            raise MeasureError(f"the session (exit {status}) wrote no results; its log {log}: {_tail(log)}")
        with open(found[0]) as handle:
            ves = json.load(handle).get("ves", [])
        self.say(f"  run {run_dir}: exit {status}, {len(ves)} VEs")
        return [{**ve, "round": first_round + (ve.get("round") or 0)} for ve in ves]
