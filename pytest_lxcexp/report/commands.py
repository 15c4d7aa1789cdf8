"""`lxcexp report DIR` and `lxcexp compare A B`: saved runs, read without running anything."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .archive import write_index
from .compare import CompareError, compare, load_ref, missing_for_rules, parse_fail_rules, regressions, table_lines

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
    try:
        rules = parse_fail_rules(args.fail or [])
    except CompareError as error:
        print(f"lxcexp compare: --fail: {error}", file=sys.stderr)
        return 2
    try:
        before_path, before = load_ref(args.before, args.dir)
        now_path, now = load_ref(args.now, args.dir, exclude=None)
    except CompareError as error:
        print(f"lxcexp compare: {error}", file=sys.stderr)
        return 2
    comparison = compare(before, now)
    print(f"A: {before_path}\nB: {now_path}")
    for line in table_lines(comparison):
        print(line)
    for note in missing_for_rules(comparison, rules):
        print(f"note: {note}")
    found = regressions(comparison, rules)
    for regression in found:
        print(f"REGRESSION: {regression}")
    if rules and not found:
        print(f"no regression beyond {', '.join(str(rule) for rule in rules)}")
    return 1 if found else 0


def add_commands(add: AddCommand) -> None:
    """Register the two subcommands through cli.build_parser's `add` helper."""
    report = add("report", cmd_report, "rebuild DIR/index.html over the runs saved with --ve-report-dir DIR")
    report.add_argument("dir", metavar="DIR", help="the report directory")
    report.set_defaults(needs_root=False)
    comparing = add("compare", cmd_compare, "compare two saved runs B (now) against A (before)")
    comparing.add_argument("before", metavar="A", help="results.json, run folder, run name in --dir, or latest")
    comparing.add_argument("now", metavar="B", help="results.json, run folder, run name in --dir, or latest")
    comparing.add_argument("--dir", default=None, help="report directory for run names and 'latest'")
    comparing.add_argument(
        "--fail",
        action="append",
        metavar="METRIC:N%",
        help="exit 1 when METRIC is more than N%% worse in B than in A (repeatable), e.g. start_p90:10%%",
    )
    comparing.set_defaults(needs_root=False)
