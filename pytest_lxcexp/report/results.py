"""The versioned results file: built from one run, written atomically, loaded and checked.

The schema is documented in docs/results-schema.md; bump SCHEMA_VERSION on any change
a reader would notice, and keep load_results() able to read every older version.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engine.stats import Summary, VERecord, latency_stats, median_timings, summarize
from .metrics import key_figures
from .sampler import Sample

SCHEMA = "pytest-lxcexp/results"
SCHEMA_VERSION = 1
SETUP_PHASES = ("setup tmpfs", "setup base", "setup network", "setup clones")

Results = dict[str, Any]
# A VE of one round: (round, index). Rounds (--ve-repeat) reuse ve1..veN, so an index alone is not one VE.
VEKey = tuple[int, int]


class ResultsError(ValueError):
    """A file that is not a results file this version can read; the message says why."""


@dataclass
class VECapture:
    """What only the tmpfs knows, read after the VEs stopped and before it is unmounted (each
    round's, with --ve-repeat: its tmpfs is gone with its takedown)."""

    log_began: dict[VEKey, int | None] = field(default_factory=dict)
    log_ended: dict[VEKey, int | None] = field(default_factory=dict)
    log_tails: dict[VEKey, str] = field(default_factory=dict)
    disk_per_ve: float | None = None
    disk_base: int | None = None

    def add(self, other: VECapture) -> None:
        """Another round's capture into this one (disk: the largest round's)."""
        self.log_began.update(other.log_began)
        self.log_ended.update(other.log_ended)
        self.log_tails.update(other.log_tails)
        self.disk_per_ve = max(filter(None, (self.disk_per_ve, other.disk_per_ve)), default=None)
        self.disk_base = max(filter(None, (self.disk_base, other.disk_base)), default=None)


@dataclass(frozen=True)
class RoundTimes:
    """One round's own phase times (--ve-repeat; a session without it is one round)."""

    number: int
    phases: Mapping[str, float]
    began_at: float | None = None  # epoch of its set up
    waited_until: float | None = None
    first_build: str | None = None  # the build that started its first VE
    left_behind: list[str] | None = None  # what its takedown left on the host (None: not looked at)
    waits: Sequence[Mapping[str, Any]] = ()  # each range's wait in the round (engine/waits.py)


@dataclass(frozen=True)
class StartTimes:
    """When each VE's start began (epoch) and how long it took; only successful starts count as started."""

    started_at: float
    latency: float
    ok: bool


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def ve_entries(
    records: Iterable[VERecord], starts: Mapping[VEKey, StartTimes], capture: VECapture | None
) -> list[dict[str, Any]]:
    entries = []
    for record in sorted(records, key=lambda r: (r.round, r.index)):
        key = (record.round, record.index)
        data = record.to_dict()
        start = starts.get(key)
        data["started_at"] = _round(start.started_at) if start else None
        data["log_began"] = capture.log_began.get(key) if capture else None
        data["log_ended"] = capture.log_ended.get(key) if capture else None
        data["log_tail"] = capture.log_tails.get(key) if capture and not record.completed else None
        entries.append(data)
    return entries


def completion_times(ves: list[dict[str, Any]], seen_by: float | None) -> None:
    """Set each completed VE's completed_at: an estimate, as its log holds whole epoch seconds.

    The middle of the logged second, but never before the VE was up, and never after
    `seen_by`, the moment the host had seen every completion ("complete all").
    """
    for ve in ves:
        ended = ve.get("log_ended")
        if ended is None or not ve.get("completed"):
            ve["completed_at"] = None
            continue
        estimate = ended + 0.5
        if seen_by is not None:
            estimate = min(estimate, seen_by)
        if ve.get("started_at") is not None:
            estimate = max(estimate, ve["started_at"] + (ve.get("start_latency") or 0.0))
        ve["completed_at"] = round(max(estimate, float(ended)), 3)


def timings_section(
    phases: Mapping[str, float],
    latencies: list[float],
    waited_until: float | None = None,
    waits: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    setups = [phases[name] for name in SETUP_PHASES if name in phases]
    return {
        "waited_until": _round(waited_until),
        # Each range's wait (several workers' merged), in the order they began.
        "waits": sorted((dict(wait) for wait in waits), key=lambda wait: wait["began"]),
        "phases": {name: _round(seconds) for name, seconds in phases.items()},
        "setup_s": _round(sum(setups)) if setups else None,
        "start_all_s": _round(phases.get("start all")),
        "complete_all_s": _round(phases.get("complete all")),
        "takedown_s": _round(phases.get("takedown")),
        # Not rounded: p50..max are the very values of the VEs' own records.
        "start_latency": latency_stats(latencies),
    }


def round_at(at: float, round_starts: Sequence[tuple[float, int]]) -> int:
    """The round going on at `at` (epoch): the last one set up by then; round 0 before any."""
    going = 0
    for began, number in sorted(round_starts):
        if began <= at:
            going = number
    return going


def timeline_section(
    samples: list[Sample], t0: float, ves: list[dict[str, Any]], round_starts: Sequence[tuple[float, int]] = ()
) -> dict[str, Any]:
    """Samples as columns, with started/completed counted from each VE's own timestamps; with
    rounds, the VEs of the round going on at each sample (column `round`)."""
    started = sorted(
        (ve["started_at"] + (ve["start_latency"] or 0.0), ve.get("round") or 0)
        for ve in ves
        if ve.get("started_at") is not None and not ve.get("start_error")
    )
    ended = sorted((ve["completed_at"], ve.get("round") or 0) for ve in ves if ve.get("completed_at") is not None)
    ordered = sorted(samples, key=lambda s: s.at)
    rounds = [round_at(s.at, round_starts) for s in ordered]
    timeline = {
        "t0": _round(t0, 3),
        "t": [round(s.at - t0, 3) for s in ordered],
        "memory_used": [s.memory_used for s in ordered],
        "cgroup_memory": [s.cgroup_memory for s in ordered],
        "running": [s.running for s in ordered],
        "started": [sum(1 for at, r in started if at <= s.at and r == n) for s, n in zip(ordered, rounds, strict=True)],
        "completed": [sum(1 for at, r in ended if at <= s.at and r == n) for s, n in zip(ordered, rounds, strict=True)],
    }
    if len(round_starts) > 1:
        timeline["round"] = rounds
    return timeline


def memory_section(timeline: dict[str, Any], first_start: float | None) -> dict[str, Any]:
    """Host memory per running VE: (memory while most VEs ran - memory just before the first start) / VEs."""
    t, used, running = timeline["t"], timeline["memory_used"], timeline["running"]
    found: dict[str, Any] = {"memory_baseline": None, "memory_running": None, "running_peak": 0, "memory_per_ve": None}
    if not t:
        return found
    found["memory_peak"] = max(used)
    peak = max(running)
    found["running_peak"] = peak
    start = None if first_start is None else first_start - timeline["t0"]
    before = [u for at, u in zip(t, used, strict=True) if start is not None and at < start]
    # The last sample before any VE started: the host with the experiment set up but empty.
    baseline = before[-1] if before else None
    window = [u for u, r in zip(used, running, strict=True) if peak > 0 and r == peak]
    if baseline is None or not window:
        return found
    found["memory_baseline"] = baseline
    found["memory_running"] = int(statistics.median(window))
    found["memory_per_ve"] = round((found["memory_running"] - baseline) / peak, 1)
    return found


def cgroup_memory_per_ve(timeline: dict[str, Any], peak: int) -> float | None:
    """What the experiment's memory cgroup was charged, per VE, while most ran (the VEs, and
    by default their monitors too: see --ve-cgroups): unlike host memory, untouched by
    anything else the host does at the time (but blind to kernel objects such as network
    namespaces that are not charged to a cgroup)."""
    charged = [
        c
        for c, r in zip(timeline.get("cgroup_memory") or [], timeline["running"], strict=False)
        if c is not None and peak > 0 and r == peak
    ]
    return round(statistics.median(charged) / peak, 1) if charged else None


def build_results(
    *,
    run_id: str,
    metadata: dict[str, Any],
    phases: Mapping[str, float],
    summary: Summary | None,
    records: Iterable[VERecord],
    starts: Mapping[int, StartTimes],
    capture: VECapture | None,
    samples: list[Sample],
    session: dict[str, Any],
    waited_until: float | None = None,
    ramp: dict[str, Any] | None = None,
    rounds: Sequence[RoundTimes] = (),
    waits: Iterable[Mapping[str, Any]] = (),
) -> Results:
    """One run as the results file's dict (see docs/results-schema.md). `rounds`: each round's
    own times (--ve-repeat); without them the run is one round of `phases`. With several, the
    run's `phases` are each phase's median over the rounds."""
    records = list(records)
    ves = ve_entries(records, starts, capture)
    rounds = list(rounds) or [RoundTimes(0, phases, waited_until=waited_until)]
    if len(rounds) > 1:
        phases = median_timings([r.phases for r in rounds])
        waited_until = rounds[-1].waited_until
    latencies = summary.start_latencies if summary else []
    summary_data = summary.to_dict() if summary else None
    if summary_data is not None:
        summary_data.pop("start_latency", None)  # lives in timings, once
    first_start = min((s.started_at for s in starts.values()), default=None)
    by_round = {r.number: r for r in rounds}
    for number, its_ves in _by_round(ves).items():
        its_first = min((ve["started_at"] for ve in its_ves if ve.get("started_at") is not None), default=None)
        its_phases = by_round[number].phases if number in by_round else {}
        complete_all = its_phases.get("complete all")
        seen_by = its_first + complete_all if its_first is not None and complete_all is not None else None
        completion_times(its_ves, seen_by)
    round_starts = [(r.began_at, r.number) for r in rounds if r.began_at is not None]
    timeline = timeline_section(samples, metadata.get("started_at") or 0.0, ves, round_starts)
    resources = memory_section(timeline, first_start)
    resources["cgroup_memory_per_ve"] = cgroup_memory_per_ve(timeline, resources["running_peak"])
    resources["disk_used"] = summary.disk_used if summary else None
    resources["disk_base"] = capture.disk_base if capture else None
    resources["disk_per_ve"] = _round(capture.disk_per_ve, 1) if capture else None
    timings = timings_section(phases, latencies, waited_until, waits)
    if summary is None or summary.completed != summary.total:
        timings["complete_all_s"] = None  # "all completed" never happened
    results: Results = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "metadata": metadata,
        "session": session,
        "summary": summary_data,
        "timings": timings,
        "resources": resources,
        "timeline": timeline,
        "ves": ves,
    }
    results["rounds"] = rounds_section(rounds, records)
    if ramp is not None:
        results["ramp"] = ramp  # --ve-count=max: the curve by step and the named stop
    results["metrics"] = key_figures(results)
    return results


def _key(ve: dict[str, Any]) -> VEKey:
    return (ve.get("round") or 0, ve["index"])


def _by_round(ves: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    for ve in ves:
        grouped.setdefault(ve.get("round") or 0, []).append(ve)
    return grouped


ROUND_COUNTS = ("total", "completed", "incomplete", "no_log", "failed_to_start", "crashed")


def rounds_section(rounds: list[RoundTimes], records: list[VERecord]) -> list[dict[str, Any]]:
    """Each round: when it began, its first build, its counts and its own timings."""
    section = []
    for entry in rounds:
        its = summarize(record for record in records if record.round == entry.number)
        timings = timings_section(entry.phases, its.start_latencies, entry.waited_until, entry.waits)
        if its.completed != its.total or not its.total:
            timings["complete_all_s"] = None  # "all completed" never happened in this round
        section.append(
            {
                "round": entry.number,
                "began_at": _round(entry.began_at),
                "first_build": entry.first_build,
                "summary": {name: getattr(its, name) for name in ROUND_COUNTS},
                "timings": timings,
                "left_behind": entry.left_behind,
            }
        )
    return section


def write_results(path: str, results: Results) -> None:
    """Write atomically: an index or compare running at the same time never reads half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(results, handle, indent=1, allow_nan=False)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_results(data: Any, source: str) -> Results:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f'{source} is not a pytest-lxcexp results file (no "schema": "{SCHEMA}")')
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ResultsError(f"{source}: bad schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise ResultsError(
            f"{source} has schema version {version}; this pytest-lxcexp reads up to {SCHEMA_VERSION} (upgrade it)"
        )
    for section in ("metadata", "timings", "resources", "ves"):
        if section not in data:
            raise ResultsError(f"{source}: the {section!r} section is missing")
    return data


def load_results(path: str) -> Results:
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist") from None
    except (OSError, ValueError) as error:
        raise ResultsError(f"{path} cannot be read as JSON: {error}") from None
    return check_results(data, path)


def _records_from(ves: list[dict[str, Any]]) -> list[VERecord]:
    fields = VERecord.__dataclass_fields__
    return [VERecord(**{k: v for k, v in ve.items() if k in fields}) for ve in ves]


def records_of(results: Results) -> list[VERecord]:
    """The run's per-VE records, as the engine has them."""
    return _records_from(results["ves"])


def summary_of(results: Results, records: list[VERecord]) -> Summary | None:
    """The run's Summary (the Results block's numbers), as written in its summary section."""
    written = results.get("summary")
    if not written:
        return None
    return summarize(
        records,
        disk_used=written.get("disk_used") or 0,
        root=written.get("root", ""),
        expected_pings=written.get("expected_pings", 0),
        workload=written.get("workload", "ping-localhost"),
    )


def _progress(ve: dict[str, Any]) -> tuple[bool, bool, int, bool, bool]:
    completed, finished, pings = bool(ve.get("completed")), bool(ve.get("finished")), ve.get("pings") or 0
    return (completed, finished, pings, bool(ve.get("started", True)), ve.get("started_at") is not None)


def host_entry(identity: dict[str, Any], results: Results) -> dict[str, Any]:
    """One host's line of the `hosts` section: who it is (key, name, root, bridge, subnet,
    first, last) and its own figures, read from its own results."""
    summary = results.get("summary") or {}
    ves = results["ves"]
    return {
        **identity,
        "ves": len(ves),
        "started": sum(1 for ve in ves if ve.get("started_at") is not None and not ve.get("start_error")),
        "completed": summary.get("completed", 0),
        "setup_s": results["timings"].get("setup_s"),
        "start_all_s": results["timings"].get("start_all_s"),
        "takedown_s": results["timings"].get("takedown_s"),
        "disk_used": results["resources"].get("disk_used"),
        "memory_per_ve": results["resources"].get("memory_per_ve"),
    }


def _host_key(part: Results) -> str:
    hosts = part.get("hosts") or [{}]
    return hosts[0].get("key", "local")


def merge_worker_results(parts: list[Results]) -> Results:
    """Several pytest-xdist workers' results -> one run's results.

    Workers of one host share its experiment and are merged first (_merge_host); several
    hosts' VEs are disjoint, and their figures add up (_merge_hosts).
    """
    if not parts:
        raise ValueError("no results to merge")
    groups: dict[str, list[Results]] = {}
    for part in parts:
        groups.setdefault(_host_key(part), []).append(part)
    merged = [_merge_host(group) for group in groups.values()]
    if len(merged) == 1:
        return merged[0]
    return _merge_hosts(sorted(merged, key=lambda results: results["hosts"][0]["first"]))


def _merge_host(parts: list[Results]) -> Results:
    """Workers of one host: VEs are matched by index; the furthest-progressed record of a VE
    wins (completed, then finished, then pings, then started). Disk is the host's one tmpfs
    (the largest any worker saw); samples are host-wide, so all workers' are one timeline.
    """
    if len(parts) == 1:
        return parts[0]
    ves: dict[VEKey, dict[str, Any]] = {}
    for part in parts:
        for ve in part["ves"]:
            known = ves.get(_key(ve))
            # Each worker's record is a snapshot taken as it left; a VE only progresses, so the
            # furthest one is the latest (a worker that left early saw others' VEs mid-run).
            if known is None or _progress(ve) > _progress(known):
                ves[_key(ve)] = ve
    summaries = _summaries(parts)
    results = _combine(
        parts,
        [ves[key] for key in sorted(ves)],
        disk_used=max(s.get("disk_used") or 0 for s in summaries),
        root=summaries[0].get("root", ""),
        disk_per_ve=max((p["resources"].get("disk_per_ve") or 0.0 for p in parts), default=None) or None,
        samples=[sample for part in parts for sample in samples_of(part)],
        workers=len(parts),
    )
    if parts[0].get("hosts"):
        results["hosts"] = [host_entry(parts[0]["hosts"][0], results)]
    return results


def _summaries(parts: list[Results]) -> list[dict[str, Any]]:
    # A worker whose experiment never came up has no summary: take values from one that has.
    return [p["summary"] for p in parts if p.get("summary")] or [{}]


def _combine(
    parts: list[Results],
    ves: list[dict[str, Any]],
    *,
    disk_used: int,
    root: str,
    disk_per_ve: float | None,
    samples: list[Sample],
    workers: int,
) -> Results:
    """One run's results from parts (workers or hosts) and their merged VEs: each phase as
    long as the longest part's, the parts' time span, and their test outcomes summed."""
    first = parts[0]
    records = _records_from(ves)
    summaries = _summaries(parts)
    summary = summarize(
        records,
        disk_used=disk_used,
        root=root,
        expected_pings=summaries[0].get("expected_pings", 0),
        workload=summaries[0].get("workload", "ping-localhost"),  # absent before workloads existed
    )
    phases: dict[str, float] = {}
    for part in parts:
        for name, seconds in part["timings"].get("phases", {}).items():
            if seconds is not None:
                phases[name] = max(phases.get(name, 0.0), seconds)
    phases |= spans(parts, ves)
    waited = [part["timings"]["waited_until"] for part in parts if part["timings"].get("waited_until") is not None]
    metadata = dict(first["metadata"])
    if any("builds" in part["metadata"] for part in parts):
        metadata["builds"] = merge_builds([part["metadata"].get("builds") or [] for part in parts])
    metadata["started_at"] = min(p["metadata"].get("started_at") or 0 for p in parts)
    metadata["ended_at"] = max(p["metadata"].get("ended_at") or 0 for p in parts)
    starts = {
        _key(ve): StartTimes(ve["started_at"], ve.get("start_latency") or 0.0, not ve.get("start_error"))
        for ve in ves
        if ve.get("started_at") is not None
    }
    capture = VECapture(
        log_began={_key(ve): ve.get("log_began") for ve in ves},
        log_ended={_key(ve): ve.get("log_ended") for ve in ves},
        log_tails={_key(ve): ve["log_tail"] for ve in ves if ve.get("log_tail")},
        disk_per_ve=disk_per_ve,
        disk_base=first["resources"].get("disk_base"),
    )
    outcomes: dict[str, int] = {}
    for part in parts:
        for outcome, count in part["session"].get("outcomes", {}).items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    return build_results(
        run_id=first["run_id"],
        metadata=metadata,
        phases=phases,
        summary=summary,
        records=records,
        starts=starts,
        capture=capture,
        samples=samples,
        session={**first["session"], "outcomes": outcomes, "workers": workers},
        waited_until=max(waited, default=None),
        waits=[wait for part in parts for wait in part["timings"].get("waits", [])],
    )


def _ve_number(proof: dict[str, Any]) -> int:
    name = str(proof.get("ve") or "")
    return int(name[2:]) if name[2:].isdigit() else 0


def merge_builds(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """metadata.builds of several parts (xdist workers, hosts) -> one list: each build once, in the
    order the parts name them, described by the first part that has it. Each part proved the
    builds on the first VEs it started: `proofs` holds them all (by VE), and `proof` is the first
    that failed, else the one of the lowest VE, as one process would have proven it."""
    merged: dict[str, dict[str, Any]] = {}
    proofs: dict[str, list[dict[str, Any]]] = {}
    for builds in parts:
        for build in builds:
            merged.setdefault(build["name"], dict(build))
            found = proofs.setdefault(build["name"], [])
            own = build.get("proofs") or ([build["proof"]] if build.get("proof") else [])
            found += [proof for proof in own if proof not in found]
    for name, build in merged.items():
        found = sorted(proofs[name], key=_ve_number)
        failed = [proof for proof in found if not proof.get("ok")]
        build["proof"] = (failed or found or [None])[0]
        build["proofs"] = found
    return list(merged.values())


def spans(parts: list[Results], ves: list[dict[str, Any]]) -> dict[str, float]:
    """ "start all" and "complete all" of several parts as spans of time, not the longest
    part's: parts that started their VEs one after the other took their sum, not their max.

    Start all: from the first VE's start request to the last VE's start returning. Complete
    all: from there to the end of the last part's wait (each part measured its own from its
    own first start)."""
    started = [ve for ve in ves if ve.get("started_at") is not None]
    if not started:
        return {}
    first = min(ve["started_at"] for ve in started)
    found = {"start all": max(ve["started_at"] + (ve.get("start_latency") or 0.0) for ve in started) - first}
    # A part that waited on nothing (its ranges' waits ran elsewhere) has no end of its own.
    ends = [part["timings"]["waited_until"] for part in parts if part["timings"].get("waited_until") is not None]
    if ends:
        found["complete all"] = max(ends) - first
    return found


def samples_of(results: Results) -> list[Sample]:
    timeline = results["timeline"]
    return [
        Sample(timeline["t0"] + at, used, running, cgroup)
        for at, used, running, cgroup in zip(
            timeline["t"], timeline["memory_used"], timeline["running"], timeline["cgroup_memory"], strict=True
        )
    ]


def summed_samples(per_host: list[list[Sample]]) -> list[Sample]:
    """Several hosts' timelines as one: at each sample, the sum of every host's latest sample."""
    events = sorted(
        ((sample.at, host, sample) for host, samples in enumerate(per_host) for sample in samples),
        key=lambda event: event[:2],  # a tie must not compare the samples themselves
    )
    latest: dict[int, Sample] = {}
    summed = []
    for at, host, sample in events:
        latest[host] = sample
        if len(latest) == len(per_host):  # from the moment every host has reported
            cgroups = [s.cgroup_memory for s in latest.values()]
            summed.append(
                Sample(
                    at,
                    sum(s.memory_used for s in latest.values()),
                    sum(s.running for s in latest.values()),
                    None if None in cgroups else sum(c for c in cgroups if c is not None),
                )
            )
    return summed


def _merge_hosts(hosts: list[Results]) -> Results:
    """Several hosts' results (each already one host's) -> one run: VEs side by side, disk and
    memory summed, each phase as long as the slowest host's, and a `hosts` line for each."""
    disk = [(r["resources"].get("disk_per_ve"), len(r["ves"])) for r in hosts if r["resources"].get("disk_per_ve")]
    merged = _combine(
        hosts,
        [ve for results in hosts for ve in results["ves"]],
        disk_used=sum(s.get("disk_used") or 0 for s in _summaries(hosts)),
        root=", ".join(results["hosts"][0]["root"] for results in hosts),
        disk_per_ve=sum(per_ve * count for per_ve, count in disk) / sum(c for _, c in disk) if disk else None,
        samples=summed_samples([samples_of(results) for results in hosts]),
        workers=sum(results["session"].get("workers", 1) for results in hosts),
    )
    merged["hosts"] = [results["hosts"][0] for results in hosts]
    return merged
