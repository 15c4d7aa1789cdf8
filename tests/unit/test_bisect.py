"""lxcexp bisect's logic, without LXC: a real git repository made here, and an injected build and
measurement. Each commit of the tiny repository holds `slowdown` (the percent its "build" starts
slower by) and, for a commit that must not build, `broken`; the measurement draws per-VE start
latencies from a fixed-seed random generator, slowed by that percent, and the verdicts are the
real ones (report/verdict.py)."""

from __future__ import annotations

import argparse
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pytest_lxcexp.bisect.command import UsageError, _plan
from pytest_lxcexp.bisect.driver import Bisection, BisectRefused, Plan, Result, summary_lines
from pytest_lxcexp.bisect.history import Commit, HistoryError, load_history
from pytest_lxcexp.bisect.judge import CANDIDATE_NAME, GOOD_NAME, judge, verdict_of
from pytest_lxcexp.bisect.runs import SessionOptions, round_command
from pytest_lxcexp.bisect.search import BAD, GOOD, SKIPPED, Search
from pytest_lxcexp.engine.build_lxc import BuildError
from pytest_lxcexp.engine.builds import build_index
from pytest_lxcexp.report.compare import compare_builds


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def make_repo(path: Path, slowdowns: list[int], broken: tuple[int, ...] = ()) -> list[str]:
    """Commit 0 is tagged good; commit k (k >= 1) sets slowdown[k]. Returns every commit, oldest first."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "t@example.invalid")
    git(path, "config", "user.name", "t")
    shas = []
    for number, slowdown in enumerate(slowdowns):
        (path / "slowdown").write_text(f"{slowdown}\n")
        if number in broken:
            (path / "broken").write_text("x\n")
        elif (path / "broken").exists():
            (path / "broken").unlink()
        git(path, "add", "-A")
        git(path, "commit", "-q", "--allow-empty", "-m", f"commit {number}")
        shas.append(git(path, "rev-parse", "HEAD"))
    git(path, "tag", "good", shas[0])
    return shas


def fake_build(repo: Path) -> Callable[[Commit], str]:
    """Builds' stand-in: the 'prefix' is the commit's slowdown; a commit with `broken` does not build."""

    def build(commit: Commit) -> str:
        files = git(repo, "ls-tree", "--name-only", commit.sha).split()
        if "broken" in files:
            raise BuildError(f"compiling failed (exit 1) at {commit.short}")
        return git(repo, "show", f"{commit.sha}:slowdown")

    return build


def ves(slowdown: float, build: str, seed: int, count: int, noise: float = 0.25) -> list[dict]:
    rng = np.random.default_rng(seed)
    latencies = 0.020 * (1 + slowdown / 100) * rng.lognormal(0, noise, count)
    return [
        {"index": i, "build": build, "start_latency": float(x), "completed": True, "log_present": True}
        for i, x in enumerate(latencies, 1)
    ]


def fake_sessions(count: int = 40, noise: float = 0.2, calls: list | None = None):
    """sessions(good_prefix, candidate_prefix, label) -> measure(round): both builds' VEs of a round."""

    def sessions(good: str, candidate: str, label: str):
        def measure(round_number: int) -> list[dict]:
            if calls is not None:
                calls.append((candidate, round_number))
            # Not from the label: it holds commit hashes, which change with the clock.
            seed = zlib.crc32(f"{good} {candidate} {round_number}".encode())
            rows = ves(float(good), GOOD_NAME, seed, count, noise) + ves(
                float(candidate), CANDIDATE_NAME, seed + 1, count, noise
            )
            return [{**ve, "round": round_number} for ve in rows]

        return measure

    return sessions


def bisect(
    tmp_path: Path, slowdowns: list[int], broken: tuple[int, ...] = (), sessions: Callable | None = None, **plan: object
) -> tuple[Result, list[str], list[str]]:
    repo = tmp_path / "lxc"
    shas = make_repo(repo, slowdowns, broken)
    said: list[str] = []
    settings = {"metric": "start_latency", "min_effect": 5.0, "max_rounds": 3, "max_steps": 20} | plan
    history = load_history(str(repo), "good", "main")
    result = Bisection(history, Plan(**settings), fake_build(repo), sessions or fake_sessions(), said.append).run()
    return result, shas, said


# -- history: the commits between good and bad --------------------------------------------


def test_history_is_bads_first_parent_line_after_good(tmp_path: Path) -> None:
    shas = make_repo(tmp_path / "lxc", [0, 0, 0, 30, 30])
    history = load_history(str(tmp_path / "lxc"), "good", "main")
    assert history.good.sha == shas[0] and history.good.describe == "good"
    assert [c.sha for c in history.commits] == shas[1:]
    assert history.commits[2].subject == "commit 3" and history.commits[2].describe.startswith("good-3-g")


def test_a_merged_branch_is_one_step_on_the_first_parent_line(tmp_path: Path) -> None:
    repo = tmp_path / "lxc"
    shas = make_repo(repo, [0, 0])
    git(repo, "checkout", "-q", "-b", "side", shas[0])
    (repo / "side").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "side work")
    side = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    merge = git(repo, "rev-parse", "HEAD")
    history = load_history(str(repo), "good", "main")
    assert [c.sha for c in history.commits] == [shas[1], merge]
    # A good commit inside the merged branch is not on that line.
    with pytest.raises(HistoryError, match="--good: .* first-parent line"):
        load_history(str(repo), side, "main")


@pytest.mark.parametrize(
    ("good", "bad", "message"),
    [
        ("main", "good", "--good: 'main' is not an ancestor of --bad 'good'"),
        ("good", "good", "--bad: 'good' is the same commit as --good 'good'"),
        ("nope", "main", "--good: 'nope' names no commit"),
        ("good", "nope", "--bad: 'nope' names no commit"),
        ("", "main", "--good: give a commit"),
    ],
)
def test_bad_refs_are_refused_naming_the_option(tmp_path: Path, good: str, bad: str, message: str) -> None:
    make_repo(tmp_path / "lxc", [0, 10])
    with pytest.raises(HistoryError) as caught:
        load_history(str(tmp_path / "lxc"), good, bad)
    assert str(caught.value).startswith(message)


def test_a_source_without_history_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(HistoryError, match="SOURCE: .* not a git tree"):
        load_history(str(tmp_path / "plain"), "a", "b")
    (tmp_path / "plain" / "f").write_text("x")
    subprocess.run(["tar", "-cf", str(tmp_path / "src.tar"), "-C", str(tmp_path), "plain"], check=True)
    with pytest.raises(HistoryError, match="SOURCE: .* is a tarball"):
        load_history(str(tmp_path / "src.tar"), "a", "b")


# -- search: which commit next --------------------------------------------------------------


def test_search_halves_the_range_in_doubt() -> None:
    search = Search(8)  # positions 0..7, 7 known bad, -1 known good
    assert search.next_position() == 3 and search.steps_left() == 3
    search.record(3, GOOD)
    assert search.next_position() == 5
    search.record(5, BAD)
    assert search.next_position() == 4
    search.record(4, BAD)
    assert search.next_position() is None
    answer = search.answer()
    assert answer.first_bad == 4 and answer.candidates == (4,)


def test_search_steps_around_skipped_commits_and_says_what_is_left_open() -> None:
    search = Search(6)  # 0..5
    assert search.next_position() == 2
    search.record(2, SKIPPED)
    assert search.next_position() == 1  # the nearest untried to the middle, the older of two
    search.record(1, GOOD)
    assert search.next_position() == 3
    search.record(3, BAD)
    assert search.next_position() is None  # only 2, skipped, lies between good 1 and bad 3
    answer = search.answer()
    assert answer.first_bad is None and answer.candidates == (2, 3) and answer.skipped == (2,)


def test_search_refuses_answers_outside_the_range_in_doubt() -> None:
    search = Search(4)
    search.record(1, BAD)
    with pytest.raises(ValueError, match="outside"):
        search.record(2, GOOD)


def test_a_one_commit_range_needs_no_midpoint() -> None:
    search = Search(1)
    assert search.next_position() is None and search.answer().first_bad == 0


# -- judge: rounds until a verdict ----------------------------------------------------------


def test_cant_tell_adds_rounds_until_the_verdict_decides() -> None:
    calls: list = []
    measure = fake_sessions(count=15, noise=0.35, calls=calls)("0", "30", "step")
    said: list[str] = []
    judged = judge(measure, "start_latency", 5.0, 8, said.append, "step")
    # 15 VEs a side cannot see 30% through this noise; pooled rounds can.
    assert judged.outcome == BAD and judged.rounds > 1 and len(calls) == judged.rounds
    assert all("can't tell" in line for line in said[:-1]) and "worse" in said[-1]
    assert judged.verdict.n_baseline == 15 * judged.rounds


def test_runs_of_several_rounds_count_every_round() -> None:
    one_round = fake_sessions(count=15, noise=0.35)("0", "30", "step")

    def two_rounds(first_round: int) -> list[dict]:  # a --rounds 2 run: rounds first_round and the next
        return one_round(first_round) + [{**ve, "round": first_round + 1} for ve in one_round(first_round + 100)]

    said: list[str] = []
    judged = judge(two_rounds, "start_latency", 5.0, 8, said.append, "step")
    assert judged.rounds % 2 == 0 and judged.verdict.n_baseline == 15 * judged.rounds
    assert said[0].startswith("step rounds 1-2: start_latency")


def test_still_cant_tell_after_max_rounds_is_a_skip() -> None:
    measure = fake_sessions(count=15, noise=0.35)("0", "3", "step")
    judged = judge(measure, "start_latency", 5.0, 2, lambda _: None, "step")
    assert judged.outcome == SKIPPED and judged.rounds == 2 and "can't tell after 2 round(s)" in judged.why


def test_a_step_whose_a_a_control_fails_is_not_decided_on_it() -> None:
    # Round 1: the good build's VEs in its A/A half 2 (positions 2, 3, 6, 7, ...) started 20%
    # slower than the rest, a host that moved under the run; the candidate is 30% slower
    # anyway. The verdict would say "worse" at once; with the control failing, the step runs
    # more rounds and decides only once the pooled control holds, or is skipped.
    clean = fake_sessions(count=40, noise=0.1)("0", "30", "step")

    def measure(round_number: int) -> list[dict]:
        rows = clean(round_number)
        if round_number == 1:
            rows = [
                {**ve, "start_latency": ve["start_latency"] * 1.2}
                if ve["build"] == GOOD_NAME and ve["index"] % 2 != ((ve["index"] + 1) // 2) % 2
                else ve
                for ve in rows
            ]
        return rows

    said: list[str] = []
    judged = judge(measure, "start_latency", 5.0, 4, said.append, "step")
    assert said[1].startswith("step round 1: not decided: the good build's A/A control came out")
    assert judged.rounds > 1
    assert judged.outcome == BAD or "A/A control failed" in judged.why
    steady = judge(clean, "start_latency", 5.0, 4, lambda _: None, "step")
    assert (steady.outcome, steady.rounds) == (BAD, 1)  # the same step without the moving host


def test_the_percentile_names_judge_the_start_latency_and_outcomes_are_judged_by_place() -> None:
    rows = ves(0, GOOD_NAME, 1, 20) + ves(0, CANDIDATE_NAME, 2, 20)
    assert verdict_of(rows, "start_p50", 5.0).metric == "start_latency"
    rows[25] = {**rows[25], "completed": False}  # the candidate's 6th VE did not complete
    completed = verdict_of(rows, "completed", 5.0)
    assert completed.method == "McNemar exact (paired)" and completed.new_failures == ("(0, 6)",)
    assert completed.verdict == "can't tell"  # one place in 20 is not told from chance
    rows[20:30] = [{**row, "completed": False} for row in rows[20:30]]  # ten places bad on the candidate only
    assert verdict_of(rows, "completed", 5.0).verdict == "worse"


# -- the whole bisection ------------------------------------------------------------------


def test_bisect_names_the_first_bad_commit(tmp_path: Path) -> None:
    result, shas, said = bisect(tmp_path, [0, 0, 0, 0, 0, 30, 30, 30, 30])
    assert result.first_bad is not None and result.first_bad.sha == shas[5]
    assert result.endpoints.outcome == BAD and result.midpoint_effect > 10
    assert [step.outcome for step in result.steps] == [GOOD, BAD, BAD]  # commits 4, 6, 5
    assert [step.commit.sha for step in result.steps] == [shas[4], shas[6], shas[5]]
    # Progress as it goes: each round's verdict with its shift and CI, each step's outcome.
    assert any(line.startswith("endpoints: bad") and "95% CI" in line for line in said)
    assert any("step 3" in line and "BAD" in line for line in said)
    lines = summary_lines(result, "start_latency")
    assert lines[-1] == f"first bad commit: {result.first_bad}"


def test_a_commit_that_does_not_build_is_skipped_and_the_search_goes_around_it(tmp_path: Path) -> None:
    # The first midpoint (commit 4) does not build: commit 3 is tried instead, and so on up to 7.
    result, shas, said = bisect(tmp_path, [0, 0, 0, 0, 0, 0, 0, 30, 30], broken=(4,))
    assert result.first_bad is not None and result.first_bad.sha == shas[7]
    assert [step.outcome for step in result.steps] == [SKIPPED, GOOD, GOOD, GOOD, BAD]
    skipped = [step for step in result.steps if step.outcome == SKIPPED]
    assert [step.commit.sha for step in skipped] == [shas[4]] and "does not build" in skipped[0].why
    assert any("SKIPPED (does not build" in line for line in said)


def test_a_skip_next_to_the_answer_leaves_two_candidates(tmp_path: Path) -> None:
    result, shas, _ = bisect(tmp_path, [0, 0, 0, 0, 0, 30, 30, 30, 30], broken=(5,))
    assert result.first_bad is None and result.stopped_by == "skipped commits left it open"
    assert [c.sha for c in result.candidates] == [shas[5], shas[6]]
    lines = summary_lines(result, "start_latency")
    assert lines[-2].endswith("(skipped)") and shas[6][:10] in lines[-1]


def test_max_steps_stops_with_the_range_left(tmp_path: Path) -> None:
    result, shas, _ = bisect(tmp_path, [0, 0, 0, 0, 0, 30, 30, 30, 30], max_steps=1)
    assert result.first_bad is None and result.stopped_by == "--max-steps 1 reached"
    assert [c.sha for c in result.candidates] == shas[5:]


def test_bad_not_worse_than_good_is_refused_after_the_endpoints(tmp_path: Path) -> None:
    # Enough VEs that the CI of an unchanged build fits inside +-5%: "same".
    with pytest.raises(BisectRefused) as caught:
        bisect(tmp_path, [0, 0, 0, 0], sessions=fake_sessions(count=600), max_rounds=1)
    assert caught.value.option == "--bad" and "is not worse than --good good" in caught.value.reason
    assert "same:" in caught.value.reason and caught.value.reason.endswith("nothing to bisect")


def test_bad_better_than_good_is_refused_too(tmp_path: Path) -> None:
    with pytest.raises(BisectRefused, match="not worse"):
        bisect(tmp_path, [0, 0, -30])


def test_cant_tell_at_the_endpoints_is_refused_naming_what_may_help(tmp_path: Path) -> None:
    # Unchanged, but 40 VEs a side over two rounds cannot show it is "same" (the usual A/A answer).
    with pytest.raises(BisectRefused) as caught:
        bisect(tmp_path, [0, 0, 0], max_rounds=2)
    assert "can't tell whether" in caught.value.reason and "--count" in caught.value.reason


def test_an_endpoint_that_does_not_build_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BisectRefused) as caught:
        bisect(tmp_path, [0, 0, 30], broken=(2,))
    assert caught.value.option == "--bad" and "does not build" in caught.value.reason


# -- the command's checks and the sessions it runs ----------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("metric", "takedown_s", "--metric: 'takedown_s' is not a per-VE metric a run measures"),
        ("metric", "monitor_pss", "--metric: 'monitor_pss' is not a per-VE metric a run measures"),
        ("count", "5", "--count: 5 is below 10"),
        ("count", "many", "--count: 'many' is not a whole number"),
        ("max_rounds", "0", "--max-rounds: 0 is below 1"),
        ("rounds", "0", "--rounds: 0 is below 1"),
        ("max_steps", "-1", "--max-steps: -1 is below 1"),
        ("min_effect", "abc", "--min-effect: 'abc' is not a percentage"),
        ("min_effect", "100%", "--min-effect: 100% must be above 0 and below 100"),
    ],
)
def test_bad_values_name_their_option(option: str, value: str, message: str) -> None:
    values = {"metric": "start_p50", "count": "100", "rounds": "1", "max_rounds": "4", "max_steps": "20"}
    values["min_effect"] = "5"
    with pytest.raises(UsageError) as caught:
        _plan(argparse.Namespace(**(values | {option: value})))
    assert str(caught.value).startswith(message)


def test_good_values_make_the_plan() -> None:
    values = {"metric": "start_p50", "count": "50", "rounds": "2", "max_rounds": "6", "max_steps": "7"}
    plan, count, rounds = _plan(argparse.Namespace(**values, min_effect="8%"))
    assert count == 50 and rounds == 2 and plan == Plan("start_p50", 8.0, 6, 7)
    with pytest.raises(UsageError, match=r"^--max-rounds: 1 is below 2 \(--rounds: a run's rounds\)$"):
        _plan(argparse.Namespace(**(values | {"max_rounds": "1"}), min_effect="8%"))


def test_a_run_is_one_ping_session_of_both_builds_interleaved() -> None:
    options = SessionOptions(30, "/tmp/runs", ("--ve-root=/tmp/r", "--ve-bridge=vex1"))
    command = round_command(options, [("candidate", "/p/c"), ("good", "/p/g")], "/tmp/runs/run002")
    assert command[1:4] == ["-m", "pytest", "--ve-suite=ping"]
    assert "--ve-count=60" in command and "--ve-report-dir=/tmp/runs/run002" in command
    assert not [part for part in command if part.startswith("--ve-repeat")]
    repeated = round_command(SessionOptions(30, "/tmp/runs", (), rounds=3), [("good", "/p/g")], "/tmp/runs/run003")
    assert "--ve-repeat=3" in repeated
    builds = [part for part in command if part.startswith("--ve-lxc=")]
    assert builds == ["--ve-lxc=candidate=/p/c", "--ve-lxc=good=/p/g"]
    assert command[-2:] == ["--ve-root=/tmp/r", "--ve-bridge=vex1"]


def test_a_step_is_judged_pair_by_pair_as_the_runs_own_report_judges_it() -> None:
    # Interleaved builds on a host that slows down as VEs pile up (30 -> 70 ms), the candidate
    # 8% slower: the drift hides it from two independent samples, the pairs (the k-th VE of each
    # build started side by side) show it. The bisect must say what `lxcexp compare RUN` says.
    rng = np.random.default_rng(1)
    rows = []
    for index in range(1, 201):
        build = (GOOD_NAME, CANDIDATE_NAME)[build_index(index, 2, 0)]
        latency = (0.030 + 0.040 * index / 200 + float(rng.normal(0, 0.002))) * (1.08 if build == CANDIDATE_NAME else 1)
        rows.append({"index": index, "build": build, "round": 0, "start_latency": latency, "completed": True})
    (report,) = compare_builds({"ves": rows})
    mine = verdict_of(rows, "start_latency", 5.0)
    assert mine.verdict == report.verdict("start_latency").verdict == "worse"
    assert mine.ci_low == report.verdict("start_latency").ci_low
