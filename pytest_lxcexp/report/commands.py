"""`lxcexp report DIR` and `lxcexp compare A B`: saved runs, read without running anything."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from .archive import write_index
from .comparable import key_of
from .compare import CompareError, judge, load_ref, parse_fail_rules, table_lines

AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def cmd_report(args: argparse.Namespace) -> int:
    try:
        path, count, skipped = write_index(args.dir)
    except FileNotFoundError:
        print(f"lxcexp report: {args.dir}: no such directory", file=sys.stderr)
        return 2
    print(f"{path}: {count} runs")
    for line in skipped:
        print(f"not listed: {line}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """B against A (two saved runs, which must be comparable unless --force); or, with A alone,
    each build of that run against its first build."""
    try:
        rules = parse_fail_rules(args.fail or [])
    except CompareError as error:
        print(f"lxcexp compare: --fail: {error}", file=sys.stderr)
        return 2
    try:
        if args.now is None:
            path, results, _ = load_ref(args.before, args.dir)
            judged = judge(results, rules)
            if not judged.comparisons:
                print(f"lxcexp compare: {path} ran one build: give a second run to compare it with", file=sys.stderr)
                return 2
            print(f"run: {path}")
        else:
            now_path, now, _ = load_ref(args.now, args.dir)
            before_path, before, warnings = load_ref(
                args.before, args.dir, key_of(now), force=args.force, exclude=os.path.dirname(now_path)
            )
            judged = judge(now, rules, before, warnings, builds=False)
            print(f"A: {before_path}\nB: {now_path}")
    except CompareError as error:
        print(f"lxcexp compare: {error}", file=sys.stderr)
        return 2
    for comparison in judged.comparisons:
        for line in table_lines(comparison):
            print(line)
    for note in judged.notes:
        print(f"note: {note}")
    for regression in judged.regressions:
        print(f"REGRESSION: {regression}")
    if judged.held:
        print(judged.held)
    return 1 if judged.regressions else 0


def add_commands(add: AddCommand) -> None:
    """Register the two subcommands through cli.build_parser's `add` helper."""
    report = add("report", cmd_report, "rebuild DIR/index.html over the runs saved with --ve-report-dir DIR")
    report.add_argument("dir", metavar="DIR", help="the report directory")
    report.set_defaults(needs_root=False)
    comparing = add(
        "compare",
        cmd_compare,
        "verdicts for saved runs: B (now) against A (before), or each build of run A against its first build",
    )
    comparing.add_argument("before", metavar="A", help="results.json, run folder, run name in --dir, or latest")
    comparing.add_argument(
        "now", metavar="B", nargs="?", default=None, help="results.json, run folder, run name in --dir, or latest"
    )
    comparing.add_argument(
        "--dir",
        default=None,
        help="report directory for run names and 'latest' (for A: the newest run comparable with B)",
    )
    comparing.add_argument(
        "--fail",
        action="append",
        metavar="METRIC[:N%]",
        help="exit 1 when METRIC's verdict is 'worse'; N%% is the minimum effect (repeatable), e.g. start_latency:10%%",
    )
    comparing.add_argument("--force", action="store_true", help="compare A and B even when they are not comparable")
    comparing.set_defaults(needs_root=False)
