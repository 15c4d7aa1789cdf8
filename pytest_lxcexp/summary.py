"""The terminal summary: the original's Results block, timings, failed VEs, leftovers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .engine.ramp import ramp_lines
from .engine.stats import results_block, summarize, timings_lines
from .engine.storage import human_size

if TYPE_CHECKING:
    from .interrupts import Interruption
    from .session import RunState

FAILED_VES_SHOWN = 20


def interrupted_lines(state: RunState, interrupted: Interruption) -> list[str]:
    """What an interrupted run got done: the results below are partial."""
    if interrupted.phase in ("takedown", "reporting"):
        # Noted, not raised: the run itself had ended, the takedown and reports went on.
        return [f"INTERRUPTED by {interrupted.words}: noted; the takedown and the results were completed", ""]
    # Started: recorded as such, or found up or logging (a starter's last start can finish
    # after the interrupt, before the starter stops).
    seen = {record.index for record in state.records.values() if record.log_present or record.state == "RUNNING"}
    started = len(state.started | seen)
    count = state.config.count
    if state.config.ramp:
        # A ramp's count is only its bound: say how far it got.
        return [f"INTERRUPTED by {interrupted.words}: the ramp had started {started} VEs; the results are partial", ""]
    if not started:
        done = "no VE was started"
    elif started < count:
        done = f"{started} of {count} VEs were started, {count - started} never were"
    else:
        done = f"all {count} VEs were started"
    return [f"INTERRUPTED by {interrupted.words}: {done}; the results are partial", ""]


def _left(state: RunState) -> list[str]:
    # xdist: each host's last worker checked its own host after its takedown.
    if state.leftovers is not None:
        return state.leftovers
    return state.experiment.leftovers() if state.experiment is not None else []


def summary_lines(state: RunState, interrupted: Interruption | None = None) -> list[str]:
    summary = state.summary
    lines = interrupted_lines(state, interrupted) if interrupted is not None else []
    if summary is None:
        # Interrupted before any VE started: nothing to count, but the takedown still matters.
        lines += ["Timings", *timings_lines(state.timings, summarize([]))] if state.timings else []
        left = _left(state)
        lines += ["", "Takedown: nothing left behind" if not left else f"Takedown LEFT BEHIND: {', '.join(left)}"]
        return lines
    lines += ["Results", *results_block(summary, human_size(summary.disk_used))]
    ramp = state.experiment.ramp_result if state.experiment is not None else None
    if ramp is not None:
        lines += ["", *ramp_lines(ramp)]
    if len(state.hosts) > 1:
        lines += ["", f"Hosts ({len(state.hosts)})", *[host.line() for host in state.hosts]]
    lines += ["", "Timings", *timings_lines(state.timings, summary)]
    failed = [record for record in state.records.values() if not record.completed]
    if failed:
        lines += ["", f"VEs that did not complete ({len(failed)}):"]
        lines += [f"  {record.name}: {record.failure}{record.fields_text}" for record in failed[:FAILED_VES_SHOWN]]
        if len(failed) > FAILED_VES_SHOWN:
            lines.append(f"  ... and {len(failed) - FAILED_VES_SHOWN} more")
    if state.warnings:
        lines += ["", "Host warnings:", *[f"  {warning}" for warning in state.warnings]]
    if state.tuned:
        lines += ["", "--ve-tune-host raised (restored at takedown):"]
        lines += [f"  {path}: {old} -> {new}" for path, (old, new) in state.tuned.items()]
    if state.kept and len(state.hosts) > 1:
        lines += ["", "--ve-keep: the experiment is still up; take it down on each host with:"]
        lines += [f"  {host.name}: lxcexp takedown --root {host.root}" for host in state.hosts]
    elif state.kept:
        command = f"lxcexp takedown --root {summary.root}"
        lines += ["", f"--ve-keep: the experiment is still up; take it down with: {command}"]
    else:
        left = _left(state)
        lines += ["", "Takedown: nothing left behind" if not left else f"Takedown LEFT BEHIND: {', '.join(left)}"]
    return lines
