"""The terminal summary: the original's Results block, timings, failed VEs, leftovers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .engine.stats import results_block, timings_lines
from .engine.storage import human_size

if TYPE_CHECKING:
    from .plugin import RunState

FAILED_VES_SHOWN = 20


def summary_lines(state: RunState) -> list[str]:
    summary, experiment = state.summary, state.experiment
    assert summary is not None and experiment is not None
    lines = ["Results", *results_block(summary, human_size(summary.disk_used))]
    lines += ["", "Timings", *timings_lines(experiment.timings, summary)]
    failed = [record for record in state.records.values() if not record.completed]
    if failed:
        lines += ["", f"VEs that did not complete ({len(failed)}):"]
        lines += [f"  {record.name}: {record.failure}" for record in failed[:FAILED_VES_SHOWN]]
        if len(failed) > FAILED_VES_SHOWN:
            lines.append(f"  ... and {len(failed) - FAILED_VES_SHOWN} more")
    if experiment.warnings:
        lines += ["", "Host warnings:", *[f"  {warning}" for warning in experiment.warnings]]
    if experiment.tuned:
        lines += ["", "--ve-tune-host raised (restored at takedown):"]
        lines += [f"  {path}: {old} -> {new}" for path, (old, new) in experiment.tuned.items()]
    if state.kept:
        command = f"lxcexp takedown --root {summary.root}"
        lines += ["", f"--ve-keep: the experiment is still up; take it down with: {command}"]
    else:
        left = experiment.leftovers()
        lines += ["", "Takedown: nothing left behind" if not left else f"Takedown LEFT BEHIND: {', '.join(left)}"]
    return lines
