"""report.compare and report.comparable: fail rules, groups and places, verdicts of runs and builds,
which runs are comparable, and the REF forms and their usage errors."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
from report_helpers import FINGERPRINT, OPTIONS, make_results

from pytest_lxcexp.report import comparable
from pytest_lxcexp.report.archive import RESULTS_FILE
from pytest_lxcexp.report.comparable import RunKey, key_of, latest_comparable, mismatches, successful
from pytest_lxcexp.report.compare import (
    CompareError,
    FailRule,
    build_groups,
    compare_builds,
    compare_runs,
    differences,
    judge,
    load_ref,
    min_effects,
    pairs_by_place,
    parse_fail_rule,
    parse_fail_rules,
    regressions,
    resolve_ref,
    run_label,
    table_lines,
    unchecked_rules,
)
from pytest_lxcexp.report.metrics import METRICS, VE_METRICS
from pytest_lxcexp.report.results import write_results
from pytest_lxcexp.report.verdict import CANT_TELL, MANN_WHITNEY, SAME, WILCOXON, WORSE

SPREAD = [0.010 + 0.0001 * (n % 17) for n in range(60)]  # 60 VEs, 10.0-11.6 ms, no two runs alike


@pytest.mark.parametrize(
    ("text", "rule", "verdict_metric"),
    [
        ("start_latency", FailRule("start_latency", None), "start_latency"),
        ("start_latency:10%", FailRule("start_latency", 10.0), "start_latency"),
        ("start_p90:10%", FailRule("start_p90", 10.0), "start_latency"),  # older names: the latency verdict
        ("completed", FailRule("completed", None), "completed"),
        ("completed:0%", FailRule("completed", 0.0), "completed"),
        (" setup_s : 20 % ", FailRule("setup_s", 20.0), "setup_s"),
        ("memory_per_ve:2.5%", FailRule("memory_per_ve", 2.5), "memory_per_ve"),
        ("first_ping", FailRule("first_ping", None), "first_ping"),
    ],
)
def test_fail_rule_forms(text: str, rule: FailRule, verdict_metric: str) -> None:
    assert parse_fail_rule(text) == rule
    assert rule.verdict_metric == verdict_metric


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("start_latency:10", "is not METRIC or METRIC:N%"),
        ("start_latency:-5%", "is not METRIC or METRIC:N%"),
        ("start_latency:ten%", "is not METRIC or METRIC:N%"),
        (":10%", "is not METRIC or METRIC:N%"),
        ("start_p95:10%", "unknown metric 'start_p95'"),
        ("speed", "known: start_latency, "),
    ],
)
def test_bad_fail_rules(text: str, reason: str) -> None:
    with pytest.raises(CompareError, match=reason):
        parse_fail_rule(text)


def test_every_metric_has_a_direction() -> None:
    assert {m.worse for m in METRICS.values()} == {"higher", "lower"}
    assert METRICS["completed"].worse == "lower" and METRICS["ramp_reached"].worse == "lower"
    assert all(METRICS[name].worse == "higher" for name in METRICS if name not in ("completed", "ramp_reached"))


def test_rules_repeat_or_come_comma_separated_and_give_minimum_effects() -> None:
    rules = parse_fail_rules(["start_p90:10%,completed", "start_latency:3%", "setup_s:20%"])
    assert [str(rule) for rule in rules] == ["start_p90:10%", "completed", "start_latency:3%", "setup_s:20%"]
    assert min_effects(rules) == {"start_latency": 3.0, "setup_s": 20.0}  # the smallest for each verdict


def test_builds_are_groups_in_order_and_pair_by_position() -> None:
    results = make_results(latencies=SPREAD[:6], builds=["system", "patched"])
    groups = build_groups(results)
    assert [group.name for group in groups] == ["system", "patched"]
    assert [ve["index"] for ve in groups[0].ves] == [1, 3, 5] and [ve["index"] for ve in groups[1].ves] == [2, 4, 6]
    assert groups[0].places == groups[1].places == [(1, 1), (1, 2), (1, 3)]  # ve1 beside ve2, ...
    plain = build_groups(make_results(latencies=SPREAD[:3]))
    assert [group.name for group in plain] == ["all VEs"] and plain[0].places == [(0, 1), (0, 2), (0, 3)]


def test_a_run_against_itself_is_never_worse() -> None:
    run = make_results(latencies=SPREAD)
    [comparison] = compare_runs(run, run)
    verdicts = {verdict.metric: verdict for verdict in comparison.verdicts}
    assert verdicts["start_latency"].verdict == SAME and verdicts["start_latency"].shift == 0
    assert all(verdict.verdict in (SAME, CANT_TELL) for verdict in comparison.verdicts)
    assert {"completed", "failed_to_start", "no_log", "incomplete", "takedown_s", "memory_per_ve"} <= set(verdicts)
    assert regressions([comparison], parse_fail_rules(["start_latency:0%", "completed", "takedown_s:0%"])) == []
    assert comparison.warnings == []


def test_slower_starts_are_worse_and_the_rule_fails() -> None:
    before = make_results(latencies=SPREAD)
    now = make_results(latencies=[value * 1.5 for value in SPREAD])
    rules = [FailRule("start_p90", 10.0)]
    comparisons = compare_runs(before, now, min_effects(rules))
    verdict = comparisons[0].verdict("start_latency")
    assert verdict.verdict == WORSE and verdict.shift_percent == pytest.approx(50, abs=3)
    assert verdict.min_effect == 10.0  # the rule's N%
    [found] = regressions(comparisons, rules)
    assert str(found) == (
        "start_p90: worse: 10.70 -> 16.05 ms, shift +50.0%, 95% CI [+47.7%, +52.3%], p 3.4e-21; "
        "p <= 0.01 and the shift is beyond the 10% minimum effect (now against before)"
    )
    faster = compare_runs(now, before)[0].verdict("start_latency")
    assert faster.verdict == "better"


def test_a_ve_that_failed_only_now_is_named_and_many_are_worse() -> None:
    comparisons = compare_runs(make_results(latencies=SPREAD), make_results(latencies=SPREAD, completed=59))
    completed = comparisons[0].verdict("completed")
    # One VE of 60: Fisher's test cannot tell it from chance; the place is named all the same.
    assert completed.verdict == CANT_TELL and completed.new_failures == ("(0, 60)",)  # ve60, by its index
    assert "fine on the baseline are not on the candidate: (0, 60)" in completed.reason
    assert regressions(comparisons, [FailRule("completed", None)]) == []
    many = compare_runs(make_results(latencies=SPREAD), make_results(latencies=SPREAD, completed=45))
    assert many[0].verdict("completed").verdict == WORSE  # 15 of 60
    assert [r.verdict.metric for r in regressions(many, [FailRule("completed", None)])] == ["completed"]


def test_builds_of_one_run_each_against_the_first() -> None:
    # ve1, ve4, ... on "system"; ve2, ve5, ... on "same" (alike); ve3, ve6, ... on "slow" (30% slower).
    latencies = [value * (1.3 if index % 3 == 2 else 1.0) for index, value in enumerate(SPREAD)]
    results = make_results(latencies=latencies, builds=["system", "same", "slow"])
    same, slow = compare_builds(results)
    assert (same.before_label, same.now_label, slow.now_label) == ("build system", "build same", "build slow")
    assert same.verdict("start_latency").verdict != WORSE
    assert slow.verdict("start_latency").verdict == WORSE
    assert same.verdict("setup_s") is None  # one value for the whole run: not a build's
    assert compare_builds(make_results(latencies=SPREAD)) == []  # one build: nothing to compare
    json.dumps([comparison.to_dict() for comparison in (same, slow)], allow_nan=False)


def test_builds_come_with_the_runs_own_a_a_control() -> None:
    # Two builds alike: the first build's two halves (positions 1, 4, 5, 8, ... against 2, 3,
    # 6, 7, ...) tell nothing apart, and no warning is raised.
    rng = np.random.default_rng(41)
    alike = list(rng.lognormal(np.log(0.010), 0.2, 80))
    [comparison] = compare_builds(make_results(latencies=alike, builds=["system", "patched"]))
    control = comparison.control
    assert control is not None and control.metric == "start_latency" and control.n_baseline == 20
    assert (control.baseline, control.candidate) == ("system, A/A half 1", "system, A/A half 2")
    assert control.verdict not in (WORSE, "better") and comparison.warnings == []
    assert any(line.startswith("A/A control: build system, A/A half 1 against") for line in table_lines(comparison))
    assert comparison.to_dict()["control"]["metric"] == "start_latency"
    assert comparison.verdict("start_latency").n_baseline == 40  # the builds' verdict still uses every pair


def test_a_failed_a_a_control_warns_that_the_runs_verdicts_may_be_false_alarms() -> None:
    # The first build's VEs in its half 2 (positions 2, 3, 6, 7, ...) 30% slower: nothing but
    # position differs, so the control says "worse" and every comparison of the run carries
    # the warning. (Three builds: the first build's position p is VE index 3p - 2.)
    half_2 = {3 * p - 2 for p in range(1, 31) if p % 2 != ((p + 1) // 2) % 2}
    latencies = [0.010 * (1.3 if index + 1 in half_2 else 1.0) * (1 + 0.01 * (index % 7)) for index in range(90)]
    comparisons = compare_builds(make_results(latencies=latencies, builds=["system", "patched", "other"]))
    assert len(comparisons) == 2
    for comparison in comparisons:
        assert comparison.control is not None and comparison.control.verdict == WORSE
        [warning] = comparison.warnings
        assert warning.startswith("the run's own A/A control (build system, A/A half 1 against system, A/A half 2")
        assert "its verdicts may be false alarms" in warning
        assert f"WARNING: {warning}" in table_lines(comparison)


def test_a_build_whose_slowest_starts_fail_does_not_look_faster() -> None:
    # "slow" is 15% slower at every place, and its starts over 46 ms time out (start_error):
    # the ones that remain are its fastest.
    rng = np.random.default_rng(3)
    results = make_results(
        latencies=[float(rng.lognormal(np.log(0.040), 0.3)) for _ in range(400)], builds=["base", "slow"]
    )
    for ve in results["ves"]:
        if ve["build"] == "slow":
            ve["start_latency"] *= 1.15
            if ve["start_latency"] > 0.046:
                ve["start_error"] = "timed out"
    [comparison] = compare_builds(results)
    latency = comparison.verdict("start_latency")
    assert (
        latency.verdict == CANT_TELL
        and "slow lost more of its VEs to failed starts (0 of 200 against" in latency.reason
    )
    assert "(the test said better)" in latency.reason
    assert comparison.verdict("failed_to_start").verdict == WORSE
    # Had the baseline lost them, a "worse" would be what the loss could explain.
    swapped = compare_builds(
        results | {"ves": [{**ve, "build": {"base": "slow", "slow": "base"}[ve["build"]]} for ve in results["ves"]]}
    )
    assert swapped[0].verdict("start_latency").verdict == CANT_TELL


def test_builds_pair_by_place_and_a_ve_that_failed_to_start_drops_out() -> None:
    results = make_results(latencies=SPREAD[:40], builds=["base", "slow"])
    for ve in results["ves"]:
        ve["monitor_pss"] = 400 * 1024 + (8 * 1024 if ve["build"] == "slow" else 0) + 16 * (ve["index"] % 5)
    results["ves"][7]["start_error"] = "Failed to start"  # ve8, build slow, place (1, 4)
    base, slow = build_groups(results)
    pairs = pairs_by_place(VE_METRICS["start_latency"], base, slow)
    assert len(pairs) == 19 and (SPREAD[6], SPREAD[7]) not in pairs
    assert pairs[:3] == [(SPREAD[0], SPREAD[1]), (SPREAD[2], SPREAD[3]), (SPREAD[4], SPREAD[5])]
    [comparison] = compare_builds(results)
    latency, pss = comparison.verdict("start_latency"), comparison.verdict("monitor_pss")
    assert latency.method == pss.method == WILCOXON and latency.n_baseline == latency.n_candidate == 19
    # Every slow monitor 8 KiB (2%) heavier, paired: a sure difference, too small for the 5% minimum effect.
    assert pss.p_value < 0.001 and pss.verdict == SAME and pss.shift == pytest.approx(8 * 1024, abs=64)
    failed = comparison.verdict("failed_to_start")  # the dropped place counts here, named
    assert failed.verdict == CANT_TELL and failed.new_failures == ("(1, 4)",)
    assert "Wilcoxon signed-rank" in "\n".join(table_lines(comparison))
    # Two runs are not paired: Mann-Whitney on every sample.
    assert compare_runs(results, results)[0].verdict("start_latency").method == MANN_WHITNEY


def test_runs_with_the_same_builds_compare_build_by_build() -> None:
    before = make_results(latencies=SPREAD, builds=["a", "b"])
    now = make_results(latencies=SPREAD, builds=["a", "b"])
    comparisons = compare_runs(before, now)
    assert [c.now_label.split()[-2:] for c in comparisons] == [["build", "a"], ["build", "b"]]
    assert comparisons[0].verdict("start_latency").n_candidate == 30


def test_a_judgement_holds_the_builds_and_the_reference_to_the_rules() -> None:
    # The plugin and `lxcexp compare` both judge through this: builds first, then the reference.
    before = make_results(latencies=SPREAD, builds=["a", "b"])
    slow_b = [value * (1.5 if index % 2 else 1.0) for index, value in enumerate(SPREAD)]
    now = make_results(latencies=slow_b, builds=["a", "b"])
    rules = parse_fail_rules(["start_latency:10%", "memory_per_ve:10%"])
    judged = judge(now, rules, before)
    assert [c.kind for c in judged.comparisons] == ["builds", "runs", "runs"]
    assert {(r.rule.metric, r.verdict.candidate) for r in judged.regressions} == {
        ("start_latency", "b"),
        ("start_latency", "now build b"),
    }
    assert judged.notes == []  # both rules checked: memory per VE is compared across runs
    assert judge(now, rules).notes == ["memory_per_ve:10%: no memory_per_ve verdict in this comparison; not checked"]
    assert judged.held is None
    assert [c.kind for c in judge(now, rules, before, builds=False).comparisons] == ["runs", "runs"]
    alike = judge(make_results(latencies=SPREAD), [FailRule("start_latency", 10.0)], make_results(latencies=SPREAD))
    assert alike.regressions == [] and alike.held == "no regression: no 'worse' verdict for start_latency:10%"
    assert judge(make_results(latencies=SPREAD), [FailRule("completed", None)]).held is None  # nothing compared


def test_rules_without_a_verdict_are_said_not_checked() -> None:
    comparisons = compare_builds(make_results(latencies=SPREAD, builds=["a", "b"]))
    notes = unchecked_rules(comparisons, parse_fail_rules(["memory_per_ve:10%", "start_latency"]))
    assert notes == ["memory_per_ve:10%: no memory_per_ve verdict in this comparison; not checked"]


def test_complete_all_is_not_reported_for_a_run_that_did_not_complete() -> None:
    assert METRICS["complete_all_s"].read(make_results()) == 2.0
    incomplete = make_results(completed=9)
    assert incomplete["timings"]["complete_all_s"] is None
    old_file = copy.deepcopy(incomplete)
    old_file["timings"]["complete_all_s"] = 30.0  # written before the rule: still not read
    assert METRICS["complete_all_s"].read(old_file) is None


def test_table_shows_medians_shift_ci_p_and_verdict() -> None:
    before = make_results(latencies=SPREAD, lxc_version="5.0.2")
    now = make_results(latencies=[value * 1.5 for value in SPREAD], lxc_version="6.0.0")
    lines = table_lines(compare_runs(before, now)[0])
    assert lines[0].startswith("baseline : 20261126T231500Z-lxc5.0.2-host-a (liblxc 5.0.2,")
    assert "liblxc 6.0.0" in lines[1]
    assert lines[2].startswith("note: two runs: how the host drifted between them is not in the CI")
    assert lines[3].split() == ["metric", "baseline", "candidate", "shift", "95%", "CI", "p", "verdict"]
    latency = lines[4].split()
    assert latency[:5] == ["start_latency", "(ms)", "10.70", "16.05", "+50.0%"]
    assert latency[-1] == "worse" and latency[5].startswith("[+")
    assert next(line for line in lines if line.startswith("completed")).split()[-1] == "same"
    takedown = next(line for line in lines if line.startswith("takedown_s"))
    assert takedown.endswith("can't tell (no test)")  # one value each, and no rule asked for a threshold


def test_one_value_metrics_are_judged_only_when_a_rule_names_them() -> None:
    before, now = make_results(latencies=SPREAD), make_results(latencies=SPREAD, phases={"takedown": 1.0})
    plain = compare_runs(before, now)[0].verdict("takedown_s")
    assert plain.verdict == CANT_TELL and plain.shift == pytest.approx(0.5)
    rules = parse_fail_rules(["takedown_s"])  # the across-runs default, 20%
    assert min_effects(rules) == {"takedown_s": 20.0}
    judged = compare_runs(before, now, min_effects(rules))
    assert judged[0].verdict("takedown_s").verdict == WORSE  # 0.5 s -> 1.0 s
    assert [r.verdict.metric for r in regressions(judged, rules)] == ["takedown_s"]
    assert compare_runs(before, now, {"takedown_s": 150.0})[0].verdict("takedown_s").verdict == SAME


# -- comparable runs -----------------------------------------------------------------------


def _key(results: dict) -> RunKey:
    return key_of(results)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"kernel": "6.18.0"}, "kernel '6.1.0' here '6.18.0'"),
        ({"cpu_count": 4}, "cpu_count 2 here 4"),
        ({"start_path": "lxc-start"}, "start_path 'forkstart' here 'lxc-start'"),
        ({"lxc_cgroup_use": "all (liblxc's default)"}, "lxc_cgroup_use 'cpu,cpuacct,pids' here"),
        ({"cgroup_layout": {"v1": [], "unified": ["cpu", "pids"]}}, "cgroup_layout {'v1': [['cpu', 'cpuacct']"),
    ],
)
def test_another_host_fingerprint_is_not_comparable(change: dict, reason: str) -> None:
    here = make_results(fingerprint={**FINGERPRINT, **change})
    reasons = mismatches(_key(make_results()), _key(here))
    assert len(reasons) == 1 and reasons[0].startswith(reason)


@pytest.mark.parametrize(
    ("option", "value"),
    [("count", 20), ("base", "debian"), ("workload", "idle"), ("network", "none"), ("cgroups", "all"), ("parallel", 8)],
)
def test_options_that_shape_the_experiment_must_match(option: str, value: object) -> None:
    reasons = mismatches(_key(make_results()), _key(make_results(options={**OPTIONS, option: value})))
    assert len(reasons) == 1 and reasons[0].startswith(f"{option} ")


@pytest.mark.parametrize(
    ("option", "before", "value"),
    [
        ("unprivileged", False, True),
        ("init", "workload", "system"),
        ("apparmor", "auto", "unconfined"),
        ("ve_pids_max", 1024, 0),
        ("start_delay", 0.0, 0.1),
    ],
)
def test_options_that_change_how_ves_start_must_match(option: str, before: object, value: object) -> None:
    reference = make_results(options={**OPTIONS, option: before})
    reasons = mismatches(_key(reference), _key(make_results(options={**OPTIONS, option: value})))
    assert len(reasons) == 1 and reasons[0].startswith(f"{option} ")
    # A run written before the option existed does not record it: not refused for it.
    assert mismatches(_key(make_results()), _key(make_results(options={**OPTIONS, option: value}))) == []


def test_latest_passes_over_a_newer_run_that_started_its_ves_otherwise(tmp_path) -> None:
    reports = str(tmp_path)
    same = _saved(reports, "20261101T000000Z-lxc5.0.2-h", options={**OPTIONS, "unprivileged": False})
    _saved(reports, "20261102T000000Z-lxc5.0.2-h", options={**OPTIONS, "unprivileged": True})
    current = _key(make_results(options={**OPTIONS, "unprivileged": False}))
    assert latest_comparable(reports, current)[0] == os.path.join(same, RESULTS_FILE)


def test_naming_options_pings_and_workers() -> None:
    renamed = make_results(options={**OPTIONS, "root": "/x", "bridge": "vex", "pings": 9})
    assert mismatches(_key(make_results()), _key(renamed)) == []  # pings only warn (compare.differences)
    workers = make_results()
    workers["session"]["workers"] = 2
    assert mismatches(_key(make_results()), _key(workers)) == ["workers 1 here 2"]
    assert mismatches(_key(make_results(fingerprint=None)), _key(make_results())) == [
        "it has no host fingerprint (written by an older pytest-lxcexp)"
    ]
    # Either side without one: `lxcexp compare A B` must not pass A=new, B=old and refuse B=new, A=old.
    assert mismatches(_key(make_results()), _key(make_results(fingerprint=None))) == [
        "the run it is compared with has no host fingerprint (written by an older pytest-lxcexp)"
    ]


def test_successful_runs() -> None:
    assert successful(make_results())
    assert not successful(make_results(completed=9))
    failed = make_results()
    failed["session"]["exitstatus"] = 1
    assert not successful(failed)
    interrupted = make_results()
    interrupted["session"]["interrupted"] = {"signal": "SIGINT"}
    assert not successful(interrupted)


def _saved(report_dir, name: str, **kwargs) -> str:
    path = os.path.join(report_dir, name)
    write_results(os.path.join(path, RESULTS_FILE), make_results(run_id=name, **kwargs))
    return path


def test_latest_is_the_newest_comparable_successful_run(tmp_path) -> None:
    reports = str(tmp_path)
    good = _saved(reports, "20261101T000000Z-lxc5.0.2-h")
    _saved(reports, "20261102T000000Z-lxc5.0.2-h", completed=9)  # not successful
    _saved(reports, "20261103T000000Z-lxc5.0.2-h", fingerprint={**FINGERPRINT, "kernel": "7.0"})
    os.makedirs(os.path.join(reports, "20261104T000000Z-lxc5.0.2-h"))  # wrote no results
    current = _key(make_results())
    path, results = latest_comparable(reports, current)
    assert path == os.path.join(good, RESULTS_FILE) and results["run_id"] == "20261101T000000Z-lxc5.0.2-h"
    assert load_ref("latest", reports, current)[0] == path
    with pytest.raises(LookupError, match="no comparable successful run in .*20261103T000000Z-lxc5.0.2-h: kernel"):
        latest_comparable(reports, _key(make_results(options={**OPTIONS, "count": 11})))


def test_latest_without_a_comparable_run_is_an_error(tmp_path) -> None:
    reports = str(tmp_path)
    _saved(reports, "20261101T000000Z-lxc5.0.2-h", completed=9)
    _saved(reports, "20261102T000000Z-lxc5.0.2-h", fingerprint={**FINGERPRINT, "kernel": "7.0"})
    current = _key(make_results())
    with pytest.raises(CompareError) as error:
        load_ref("latest", reports, current)
    text = str(error.value)
    assert text.startswith(f"'latest': no comparable successful run in {reports}: ")
    assert "20261102T000000Z-lxc5.0.2-h: kernel '7.0' here '6.1.0'" in text
    assert "20261101T000000Z-lxc5.0.2-h: not successful" in text and text.endswith("--ve-compare-force compares anyway")
    # Forced: the newest run, whatever it is.
    path, _, warnings = load_ref("latest", reports, current, force=True)
    assert path.endswith("20261102T000000Z-lxc5.0.2-h/results.json")
    assert warnings == ["compared although not comparable: kernel '7.0' here '6.1.0'"]


def test_an_incomparable_reference_is_an_error_unless_forced(tmp_path) -> None:
    other = _saved(str(tmp_path), "20261101T000000Z-lxc5.0.2-h", options={**OPTIONS, "count": 20})
    current = _key(make_results())
    with pytest.raises(CompareError, match=r"is not comparable with this run: count 20 here 10 \(--ve-compare-force\)"):
        load_ref(other, None, current)
    path, results, warnings = load_ref(other, None, current, force=True)
    assert results["metadata"]["options"]["count"] == 20 and warnings
    assert load_ref(other, None)[2] == []  # without a current run to match (lxcexp compare's B): no check


def test_ref_forms(tmp_path) -> None:
    reports = tmp_path / "reports"
    old = _saved(reports, "20261101T000000Z-lxc5.0.2-h")
    new = _saved(reports, "20261102T000000Z-lxc6.0.0-h")
    assert resolve_ref(os.path.join(old, RESULTS_FILE), None) == os.path.join(old, RESULTS_FILE)
    assert resolve_ref(old, None) == os.path.join(old, RESULTS_FILE)
    assert resolve_ref("20261101T000000Z-lxc5.0.2-h", str(reports)) == os.path.join(old, RESULTS_FILE)
    assert load_ref("latest", str(reports))[0] == os.path.join(new, RESULTS_FILE)
    assert load_ref("latest", str(reports), exclude=new)[0] == os.path.join(old, RESULTS_FILE)


@pytest.mark.parametrize(
    ("ref", "with_dir", "reason"),
    [
        ("latest", False, "'latest' needs --ve-report-dir"),
        ("latest", True, "holds no saved run yet"),
        ("nothing-here", True, "no such results file or run folder"),
        (".", False, "is a folder without a results.json"),
    ],
)
def test_bad_refs(tmp_path, monkeypatch, ref: str, with_dir: bool, reason: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CompareError, match=reason):
        load_ref(ref, str(tmp_path) if with_dir else None, _key(make_results()))


def test_this_host_fingerprint() -> None:
    found = comparable.host_fingerprint(("cpu", "pids"))
    assert found["kernel"] == os.uname().release and found["cpu_count"] == os.cpu_count()
    assert "pids" in found["lxc_cgroup_use"].split(",") or found["lxc_cgroup_use"] == "all (liblxc's default)"
    assert comparable.host_fingerprint(None)["lxc_cgroup_use"] == "all (liblxc's default)"
    assert isinstance(found["cgroup_layout"]["v1"], list)
    assert found["start_path"] == "forkstart"  # lxc-dev and gcc are installed by `make deps`


def test_runs_of_several_builds_compare_build_by_build_by_name_whatever_their_order() -> None:
    # Build b is 50% slower than a in the reference. Listed the other way round (--ve-lxc b
    # first), and with b alone: each build must still be held against itself, never against
    # a pool of both (where an unchanged b came out "worse" and a changed one "same").
    slow_b = [value * (1.5 if index % 2 else 1.0) for index, value in enumerate(SPREAD)]
    before = make_results(latencies=slow_b, builds=["a", "b"])
    swapped = make_results(latencies=[value * (1.5 if index % 2 == 0 else 1.0) for index, value in enumerate(SPREAD)])
    for ve in swapped["ves"]:
        ve["build"], ve["round"] = ("b", "a")[(ve["index"] - 1) % 2], 1
    comparisons = compare_runs(before, swapped)
    assert [c.now_label.split()[-1] for c in comparisons] == ["b", "a"]
    assert {c.verdict("start_latency").verdict for c in comparisons} == {SAME}
    b_alone = make_results(latencies=[value * 1.5 for value in SPREAD[1::2]], builds=["b"])
    [comparison] = compare_runs(before, b_alone)
    assert comparison.now_label.endswith("build b") and comparison.verdict("start_latency").verdict == SAME
    assert "builds in one run only, not compared: a (before only)" in comparison.warnings


def test_a_rule_that_no_test_could_check_is_said_not_checked_and_never_held() -> None:
    # Eight VEs a run, every start 3x slower: "can't tell (too few samples)" is no evidence that
    # nothing regressed; the rule must be reported not checked, not "no regression".
    before = make_results(latencies=SPREAD[:8])
    now = make_results(latencies=[value * 3 for value in SPREAD[:8]])
    judged = judge(now, parse_fail_rules(["start_latency"]), before, builds=False)
    assert judged.comparisons[0].verdict("start_latency").verdict == CANT_TELL and not judged.regressions
    assert judged.notes == ["start_latency: start_latency had too few samples for a test; not checked"]
    assert judged.held is None
    # With enough samples the same rule is checked, and held when nothing is worse.
    enough = judge(make_results(latencies=SPREAD), parse_fail_rules(["start_latency"]), make_results(latencies=SPREAD))
    assert enough.notes == [] and enough.held == "no regression: no 'worse' verdict for start_latency"


def test_a_rule_whose_test_could_not_tell_is_not_held() -> None:
    # One VE of 60 failed only now: the verdict names it but cannot tell it from chance, and
    # "no regression" would read as "nothing failed".
    judged = judge(
        make_results(latencies=SPREAD, completed=59), parse_fail_rules(["completed"]), make_results(latencies=SPREAD)
    )
    assert judged.regressions == [] and judged.held is None
    [note] = judged.notes
    assert note.startswith("completed: can't tell (a difference Fisher's test cannot tell from chance (p > 0.01); ")
    assert "(0, 60)" in note and note.endswith("neither a regression nor shown to be none")


def test_labels_name_the_builds_that_started_the_ves_and_another_machine_warns() -> None:
    before = make_results(latencies=SPREAD, lxc_version="5.0.2")
    now = make_results(latencies=SPREAD, lxc_version="5.0.2")
    now["metadata"]["builds"] = [
        {"name": "a", "version": "6.0.6", "sha256": "0123456789abcdef" * 4},
        {"name": "b", "version": "6.0.7", "sha256": "fedcba9876543210" * 4},
    ]
    # The tool's own liblxc (5.0.2) did not start these VEs: the builds did.
    assert run_label(now).endswith("(LXC a 6.0.6 0123456789ab; b 6.0.7 fedcba987654, kernel 6.1.0, host host-a)")
    assert "(liblxc 5.0.2," in run_label(before)
    now["metadata"] |= {"hostname": "laptop", "memory_total": 4 << 30}
    before["metadata"]["memory_total"] = 24 << 30
    assert differences(before, now) == [
        f"the runs ran on different machines: host 'host-a' -> 'laptop', memory {24 << 30} -> {4 << 30}"
    ]
