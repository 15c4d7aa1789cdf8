"""The terminal summary: the original's Results block, timings, failed VEs, leftovers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .engine.ramp import ramp_lines
from .engine.stats import VERecord, median_timings, results_block, round_line, summarize, timings_lines
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
    current = state.rounds[-1].number if state.rounds else 0
    seen = {
        (record.round, record.index)
        for record in state.records.values()
        if record.round == current and (record.log_present or record.state == "RUNNING")
    }
    started = len({key for key in state.started if key[0] == current} | seen)
    count = state.config.count
    words = interrupted.words
    if state.config.repeat > 1:
        words += f" in round {current + 1} of {state.config.repeat}"
    if state.config.ramp:
        # A ramp's count is only its bound: say how far it got.
        return [f"INTERRUPTED by {words}: the ramp had started {started} VEs; the results are partial", ""]
    if not started:
        done = "no VE was started"
    elif started < count:
        done = f"{started} of {count} VEs were started, {count - started} never were"
    else:
        done = f"all {count} VEs were started"
    return [f"INTERRUPTED by {words}: {done}; the results are partial", ""]


def _left(state: RunState) -> list[str]:
    # xdist: each host's last worker checked its own host after its takedown.
    if state.leftovers is not None:
        return state.leftovers
    # Each round looked after its own takedown, before the next round's set up.
    looked = [(r.number, r.left_behind) for r in state.rounds if r.left_behind is not None]
    if looked and len(looked) == len(state.rounds):
        if state.config.repeat == 1:
            return looked[0][1] or []
        return [f"(round {number + 1}) {what}" for number, left in looked for what in left or []]
    return state.experiment.leftovers() if state.experiment is not None else []


def rounds_lines(state: RunState) -> list[str]:
    """--ve-repeat: each round's counts and times, then what the Timings below are."""
    if state.config.repeat == 1 or not state.rounds:
        return []
    lines = ["", f"Rounds ({len(state.rounds)} of {state.config.repeat})"]
    lines += [round_line(r.number, r.first_build, r.summary, r.timings) for r in state.rounds]
    return lines


def _timings(state: RunState) -> tuple[str, dict[str, float]]:
    """The Timings block's title and phases: with rounds, each phase's median over them."""
    if state.config.repeat == 1 or not state.rounds:
        return "Timings", state.timings
    title = f"Timings (median of {len(state.rounds)} rounds; start latency of all their VEs)"
    return title, median_timings([r.timings for r in state.rounds])


def _where(state: RunState, record: VERecord) -> str:
    return f"round {record.round + 1} " if state.config.repeat > 1 else ""


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
    lines += rounds_lines(state)
    title, timings = _timings(state)
    lines += ["", title, *timings_lines(timings, summary)]
    failed = [record for record in state.records.values() if not record.completed]
    if failed:
        lines += ["", f"VEs that did not complete ({len(failed)}):"]
        lines += [
            f"  {_where(state, record)}{record.name}: {record.failure}{record.fields_text}"
            for record in failed[:FAILED_VES_SHOWN]
        ]
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
