"""How often does the verdict cry "worse" when nothing changed? Real runs of the tool, counted.

    .venv/bin/python benchmarks/verdict_calibration.py --runs 5 --count 200
    .venv/bin/python benchmarks/verdict_calibration.py --runs 20 --ve-lxc base=system --ve-lxc same=system
    .venv/bin/python benchmarks/verdict_calibration.py --analyse-only --dir /tmp/lxcexp-calibration

Each run is a real pytest session of the ping suite (--ve-suite=ping) with
--ve-report-dir, so its results.json holds every VE's start latency. Then, per run:

- with two or more --ve-lxc builds: each build against the first (report/compare.py's
  compare_builds), as `lxcexp compare` and the report show it; the same build on both
  sides is an A/A test, a build slowed on purpose an A/B test;
- without builds: A/A within the run, the odd VEs against the even ones (ve1 pairs with
  ve2: started next to each other, they met the same host);

and A/A across runs: each run against the one before it, every sample of both
(compare_runs, as --ve-compare does). It prints each verdict and how many of the N came
out "worse", how long one run took and the host's load average around it, and for
several minimum effects how many start-latency comparisons would have been "worse"
(p <= alpha and a shift beyond it). Within runs, builds are compared pair by pair (the
tool's method, docs/verdicts.md); the same VEs compared as two independent samples
(Mann-Whitney, the method before pairing) are counted beside it, and the per-VE memory
(monitor PSS) verdicts where the runs recorded it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pytest_lxcexp.report.archive import list_runs  # noqa: E402
from pytest_lxcexp.report.compare import (  # noqa: E402
    Comparison,
    Group,
    build_groups,
    compare_builds,
    compare_runs,
    group_verdicts,
    table_lines,
)
from pytest_lxcexp.report.results import Results  # noqa: E402
from pytest_lxcexp.report.verdict import ALPHA, BETTER, DEFAULT_MIN_EFFECT, WORSE, Verdict  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EFFECTS = (0.0, 2.0, 5.0, 10.0, 20.0)


def run_once(args: argparse.Namespace, runs_dir: str) -> tuple[float, int]:
    """One real pytest session; (wall seconds, exit status). The batch size is the count: every
    VE started in one go, interleaved between the builds."""
    command = [
        os.path.join(REPO, ".venv", "bin", "pytest"),
        "--ve-suite=ping",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--ve-count={args.count}",
        f"--ve-batch={args.count}",
        f"--ve-pings={args.pings}",
        f"--ve-ping-interval={args.interval}",
        "--ve-tmpfs-size=512M",
        f"--ve-root={args.root}",
        f"--ve-bridge={args.bridge}",
        f"--ve-subnet={args.subnet}",
        f"--ve-report-dir={runs_dir}",
        *[f"--ve-lxc={build}" for build in args.ve_lxc],
        *([f"--ve-repeat={args.ve_repeat}"] if args.ve_repeat else []),
        *args.extra,
    ]
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    took = time.monotonic() - began
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
    return took, done.returncode


def halves(results: Results) -> list[Comparison]:
    """A/A inside one run without builds: odd VEs (baseline) against even ones, ve1 beside ve2."""
    ves = sorted(results["ves"], key=lambda ve: ve["index"])
    odd = [ve for ve in ves if ve["index"] % 2 == 1]
    even = [ve for ve in ves if ve["index"] % 2 == 0]
    baseline = Group("odd VEs", odd, [(0, (ve["index"] + 1) // 2) for ve in odd])
    candidate = Group("even VEs", even, [(0, ve["index"] // 2) for ve in even])
    return [Comparison("halves", "odd VEs", "even VEs", group_verdicts(baseline, candidate, paired=True), [])]


def within(results: Results) -> list[Comparison]:
    return compare_builds(results) or halves(results)


def start_verdicts(comparisons: list[Comparison], metric: str = "start_latency") -> list[Verdict]:
    return [v for c in comparisons for v in c.verdicts if v.metric == metric]


def unpaired(results: Results) -> list[Verdict]:
    """The builds' start latencies as two independent samples (Mann-Whitney), as before pairing."""
    groups = build_groups(results)
    return [
        v for group in groups[1:] for v in group_verdicts(groups[0], group, paired=False) if v.metric == "start_latency"
    ]


def count_line(title: str, verdicts: list[Verdict]) -> str:
    worse = sum(v.verdict == WORSE for v in verdicts)
    kinds = {kind: sum(v.verdict == kind for v in verdicts) for kind in ("worse", "better", "same", "can't tell")}
    shifts = [v.shift_percent for v in verdicts if v.shift_percent is not None]
    widths = [ci[1] - ci[0] for v in verdicts if (ci := v.ci_percent) is not None]
    spread = (
        f"; shift median {statistics.median(shifts):+.1f}% (|shift| max {max(map(abs, shifts)):.1f}%), "
        f"95% CI width median {statistics.median(widths):.1f}%"
        if shifts
        else ""
    )
    shown = ", ".join(f"{kind} {n}" for kind, n in kinds.items())
    return f"{title}: worse in {worse} of {len(verdicts)} ({shown}){spread}"


def by_effect(verdicts: list[Verdict]) -> str:
    """How many would be 'worse' at other minimum effects: p <= alpha and the shift beyond it."""
    counts = []
    for effect in EFFECTS:
        n = sum(v.p_value is not None and v.p_value <= ALPHA and (v.shift_percent or 0.0) > effect for v in verdicts)
        counts.append(f"{effect:g}%: {n}")
    return f"    'worse' at a minimum effect of {', '.join(counts)} (of {len(verdicts)})"


def analyse(runs: list[tuple[str, Results]], across_runs: bool = True) -> None:
    inside: list[Verdict] = []
    others: list[Verdict] = []
    independent: list[Verdict] = []
    controls: list[Verdict] = []  # each builds run's own A/A control (compare.a_a_control), once a run
    print(f"\nalpha {ALPHA:g}, minimum effect {DEFAULT_MIN_EFFECT:g}% (the defaults)")
    print("\n== within each run (builds against the first; without builds: odd VEs against even) ==")
    for name, results in runs:
        comparisons = within(results)
        inside += start_verdicts(comparisons)
        controls += [comparisons[0].control] if comparisons and comparisons[0].control else []
        independent += unpaired(results)
        others += [v for c in comparisons for v in c.verdicts if v.metric != "start_latency"]
        print(f"-- {name}")
        for comparison in comparisons:
            for line in table_lines(comparison)[2:]:
                print("   " + line)
    across: list[Verdict] = []
    print("\n== each run against the one before it (every sample of both, as --ve-compare) ==")
    for (old_name, old), (new_name, new) in zip(runs, runs[1:] if across_runs else [], strict=False):
        comparisons = compare_runs(old, new)
        verdicts = start_verdicts(comparisons)
        across += verdicts
        for verdict in verdicts:
            ci = verdict.ci_percent or (float("nan"), float("nan"))
            print(
                f"   {new_name} vs {old_name}: start_latency median {verdict.baseline_value * 1000:.2f} -> "
                f"{verdict.candidate_value * 1000:.2f} ms, shift {verdict.shift_percent:+.1f}% "
                f"[{ci[0]:+.1f}%, {ci[1]:+.1f}%], p {verdict.p_value:.2g}: {verdict.verdict}"
            )
    print("\n== counts ==")
    print(count_line("start_latency within runs (paired)", inside))
    print(by_effect(inside))
    if controls:
        failed = sum(v.verdict in (WORSE, BETTER) for v in controls)
        print(count_line("the runs' own A/A controls", controls) + f"; failed (worse or better) in {failed}")
    if independent:
        print(count_line("start_latency within runs, unpaired (Mann-Whitney)", independent))
    for metric in ("monitor_pss", "cgroup_memory"):
        memory = [v for v in others if v.metric == metric and v.p_value is not None]
        if memory:
            print(count_line(f"{metric} within runs (paired)", memory))
    worse_other = [v for v in others if v.verdict == WORSE]
    print(f"other metrics within runs: worse in {len(worse_other)} of {len(others)}")
    if across:
        print(count_line("start_latency run against run", across))
        print(by_effect(across))


def pooled(runs: list[tuple[str, Results]], size: int) -> list[Verdict]:
    """Start latency of each build against the first over `size` consecutive runs at once: every
    run's pairs in one paired comparison (places keyed by run), a stand-in for `size` rounds of
    one session (--ve-repeat; there, rounds also alternate which build starts first)."""
    verdicts = []
    for first in range(0, len(runs) - size + 1, size):
        chunk = [build_groups(results) for _, results in runs[first : first + size]]
        if any(len(groups) < 2 or len(groups) != len(chunk[0]) for groups in chunk):
            continue
        merged = [
            Group(
                chunk[0][side].name,
                [ve for groups in chunk for ve in groups[side].ves],
                [(number, *place) for number, groups in enumerate(chunk) for place in groups[side].places],
            )
            for side in range(len(chunk[0]))
        ]
        for candidate in merged[1:]:
            verdicts += [v for v in group_verdicts(merged[0], candidate, paired=True) if v.metric == "start_latency"]
    return verdicts


def single_rounds(runs: list[tuple[str, Results]]) -> list[Verdict]:
    """Start latency of each build against the first within each round alone (runs made with
    --ve-repeat): what one round of the same sessions would have said."""
    verdicts = []
    for _, results in runs:
        groups = build_groups(results)
        if len(groups) < 2:
            continue
        for number in sorted({place[0] for place in groups[0].places}):

            def of_round(group: Group, number: int = number) -> Group:
                kept = [(ve, place) for ve, place in zip(group.ves, group.places, strict=True) if place[0] == number]
                return Group(group.name, [ve for ve, _ in kept], [place for _, place in kept])

            base = of_round(groups[0])
            for candidate in groups[1:]:
                verdicts += [
                    v for v in group_verdicts(base, of_round(candidate), paired=True) if v.metric == "start_latency"
                ]
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="real pytest sessions (default 5)")
    parser.add_argument("--count", type=int, default=200, help="VEs per run (default 200)")
    parser.add_argument("--pings", type=int, default=2, help="pings per VE (default 2)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between pings (default 0.2)")
    parser.add_argument("--ve-lxc", action="append", default=[], help="a build, passed on as --ve-lxc (repeatable)")
    parser.add_argument("--ve-repeat", type=int, default=0, help="passed on as --ve-repeat")
    parser.add_argument("--dir", default="/tmp/lxcexp-calibration", help="where the runs are archived")
    parser.add_argument("--root", default="/tmp/lxcexp-calibration-root", help="experiment root")
    parser.add_argument("--bridge", default="vecalib", help="bridge name")
    parser.add_argument("--subnet", default="10.199.0.0/16", help="VE subnet")
    parser.add_argument("--analyse-only", action="store_true", help="only analyse the runs already in --dir")
    parser.add_argument("--within-only", action="store_true", help="skip the run-against-run comparisons")
    parser.add_argument(
        "--pool",
        type=int,
        action="append",
        default=[],
        help="also compare the pairs of N consecutive runs at once (repeatable): what N rounds would give",
    )
    parser.add_argument("extra", nargs="*", help="more pytest options, after --")
    args = parser.parse_args()
    if not args.analyse_only:
        if os.path.isdir(args.dir) and os.listdir(args.dir):
            parser.error(f"--dir {args.dir} is not empty: give a new one, or --analyse-only")
        took, loads = [], []
        for number in range(1, args.runs + 1):
            seconds, status = run_once(args, args.dir)
            took.append(seconds)
            loads.append(os.getloadavg()[0])  # the host's 1-minute load average, as the run ended
            print(f"run {number}/{args.runs}: {seconds:.1f} s, exit status {status}, load {loads[-1]:.1f}", flush=True)
        spread = f"{min(took):.1f}-{max(took):.1f}"
        print(f"one run of {args.count} VEs took {statistics.median(took):.1f} s (median; {spread})")
        load = f"median {statistics.median(loads):.1f}, {min(loads):.1f}-{max(loads):.1f}"
        print(f"load average (1 min) after each run: {load}")
    saved, skipped = list_runs(args.dir)
    for line in skipped:
        print(f"skipped: {line}")
    if not saved:
        print(f"no runs in {args.dir}", file=sys.stderr)
        return 1
    runs = [(run.name, run.results) for run in saved]
    analyse(runs, across_runs=not args.within_only)
    if any(len({place[0] for place in build_groups(results)[0].places}) > 1 for _, results in runs):
        print(count_line("start_latency, each round alone", single_rounds(runs)))
    for size in args.pool:
        verdicts = pooled(runs, size)
        if verdicts:
            print(count_line(f"start_latency, the pairs of {size} runs at once", verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
