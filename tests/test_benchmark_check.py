"""benchmarks/check.py: the regression guard's comparison, on crafted figures (no run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.check import (
    BASELINE_FORMAT,
    BASELINE_VERSION,
    Finding,
    baseline,
    best,
    compare,
    flagged_sections,
    is_absolute_cpu,
    median,
    metrics,
    recorded_metrics,
    regressed,
    render_findings,
)

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"

CPU = "polling.ours.cpu_ms_per_job"
POLLS = "polling.ours.polls_per_job"
LAG = "polling.ours.lag_p99_s"


def one(recorded: float, now: float, threshold: float = 0.15) -> Finding:
    [finding] = compare({CPU: recorded}, {CPU: now}, threshold)
    return finding


class TestCompare:
    def test_16_percent_worse_cpu_flags(self) -> None:
        finding = one(10.0, 11.6)
        assert finding.worse
        assert finding.verdict == "regression"
        assert finding.ratio == pytest.approx(1.16)

    def test_14_percent_worse_cpu_does_not(self) -> None:
        finding = one(10.0, 11.4)
        assert not finding.worse
        assert finding.verdict == "ok"

    def test_exactly_the_threshold_does_not(self) -> None:
        assert not one(10.0, 11.5).worse

    @pytest.mark.parametrize("metric", [POLLS, LAG, CPU])
    def test_lower_is_better(self, metric: str) -> None:
        [worse] = compare({metric: 1.0}, {metric: 1.2})
        [better] = compare({metric: 1.0}, {metric: 0.2})
        assert worse.worse
        assert not better.worse
        assert better.ratio == pytest.approx(0.2)

    def test_a_much_better_figure_never_flags(self) -> None:
        assert not one(10.0, 0.0).worse
        assert not one(10.0, 1.0, threshold=0.0).worse

    def test_the_threshold_is_a_parameter(self) -> None:
        assert one(10.0, 10.6, threshold=0.05).worse
        assert not one(10.0, 14.0, threshold=0.5).worse

    def test_a_metric_missing_from_the_recording_is_not_recorded(self) -> None:
        findings = compare({CPU: 5.0}, {CPU: 5.0, POLLS: 3.0})
        new = findings[1]
        assert new == Finding(POLLS, None, 3.0, None, False)
        assert new.verdict == "not recorded"
        assert not regressed(findings)

    def test_a_recorded_metric_this_run_did_not_measure_is_left_out(self) -> None:
        findings = compare({CPU: 5.0, POLLS: 3.0}, {CPU: 5.0})
        assert [f.metric for f in findings] == [CPU]

    def test_from_zero(self) -> None:
        assert compare({"x.y": 0.0}, {"x.y": 0.0}) == [Finding("x.y", 0.0, 0.0, None, False)]
        [finding] = compare({"x.y": 0.0}, {"x.y": 1.0})
        assert finding.worse
        assert finding.ratio == float("inf")

    def test_regressed_is_any(self) -> None:
        findings = compare({CPU: 10.0, POLLS: 3.0}, {CPU: 10.0, POLLS: 4.0})
        assert [f.worse for f in findings] == [False, True]
        assert regressed(findings)
        assert not regressed(findings[:1])

    def test_absolute_cpu_can_be_left_unjudged(self) -> None:
        ratio = "polling.ours.cpu_ratio_to_cheapest_peer"
        recorded = {CPU: 10.0, ratio: 1.0, POLLS: 3.0}
        now = {CPU: 13.0, ratio: 1.3, POLLS: 3.0}
        cpu, by_ratio, polls = compare(recorded, now, absolute_cpu=False)
        assert (cpu.worse, cpu.judged, cpu.verdict) == (False, False, "not judged")
        assert cpu.ratio == pytest.approx(1.3)
        assert by_ratio.worse
        assert polls.verdict == "ok"
        assert all(f.judged for f in compare(recorded, now))

    def test_which_metrics_are_absolute_cpu(self) -> None:
        absolute = [
            CPU,
            "overhead.poll.cpu_ms_per_1000",
            "throughput.cpu_ms_per_1000_records",
            "scale.1000_jobs.scheduler_cpu_us_per_poll",
            "fleet.P2.split.cpu_ms_per_request",
        ]
        assert all(is_absolute_cpu(name) for name in absolute)
        assert not any(
            is_absolute_cpu(name)
            for name in [
                POLLS,
                LAG,
                "polling.ours.cpu_ratio_to_cheapest_peer",
                "overhead.poll.cpu_ratio_to_raw_aiohttp",
                "fleet.P2.split.cpu_ratio_to_default",
                "scale.halfway.bytes_per_job",
            ]
        )

    def test_a_negative_threshold_is_refused(self) -> None:
        with pytest.raises(ValueError, match="threshold"):
            compare({}, {}, -0.1)


class TestRerun:
    def test_flagged_sections_each_once_in_order(self) -> None:
        recorded = {"skew.a.lag_p99_s": 1.0, CPU: 1.0, LAG: 1.0, "fleet.P2.x": 1.0}
        now = {"skew.a.lag_p99_s": 2.0, CPU: 2.0, LAG: 2.0, "fleet.P2.x": 1.0}
        assert flagged_sections(compare(recorded, now)) == ["skew", "polling"]
        assert flagged_sections(compare(recorded, recorded)) == []

    def test_best_is_each_metrics_lowest(self) -> None:
        first = {CPU: 6.0, LAG: 0.3}
        second = {LAG: 0.5, CPU: 5.0, POLLS: 3.0}
        assert best(first, second) == {CPU: 5.0, LAG: 0.3, POLLS: 3.0}
        assert list(best(first, second)) == [CPU, LAG, POLLS]

    def test_median_of_repeated_runs(self) -> None:
        runs = [{CPU: 6.0, LAG: 0.9}, {CPU: 5.0, LAG: 0.2}, {CPU: 9.0, POLLS: 3.0}]
        assert median(runs) == {CPU: 6.0, LAG: 0.55, POLLS: 3.0}
        assert median([]) == {}

    def test_a_regression_in_one_run_only_is_noise(self) -> None:
        recorded = {CPU: 10.0}
        assert regressed(compare(recorded, {CPU: 13.0}))
        assert not regressed(compare(recorded, best({CPU: 13.0}, {CPU: 10.5})))
        assert regressed(compare(recorded, best({CPU: 13.0}, {CPU: 12.0})))


def report() -> dict[str, Any]:
    """A report shaped as ``run.py`` writes it, trimmed to the guarded figures."""
    spread = {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3}
    return {
        "mode": "quick",
        "machine": "test",
        "when": "2026-12-07T00:00:00+00:00",
        "overhead": {
            "cpu_ms_per_1000": {"poll_ours": spread, "create_ours": spread},
            "ratio_poll": {**spread, "median": 1.1},
            "ratio_create": {**spread, "median": 1.3},
        },
        "throughput": {"records": 2000, "client_cpu_seconds": {"ours": {"median": 0.5}}},
        "polling": {
            "strategies": [
                {"strategy": "ours", "polls_per_job": 3.0, "lag_p99_s": 0.4, "cpu_ms_per_job": 6},
                {"strategy": "naive-1s", "polls_per_job": 5, "lag_p99_s": 1, "cpu_ms_per_job": 3},
                {"strategy": "tenacity", "polls_per_job": 4, "lag_p99_s": 2, "cpu_ms_per_job": 2},
            ]
        },
        "scale": {
            "halfway": {"bytes_per_job": {"ours": {"median": 2000.0}}},
            "scheduler_cpu_us_per_poll": {"1000": 14.0},
        },
        "skew": {"lag_s": {"server_10s_ahead": {"p99": {"median": 0.3}}}},
        "fleet": {
            "rows": [
                {
                    "processes": 2,
                    "scenario": "split",
                    "setup": "fleet",
                    "status_per_job": 2.0,
                    "lag_p99_s": 0.25,
                    "cpu_ms_per_request": 6.0,
                },
                {
                    "processes": 2,
                    "scenario": "split",
                    "setup": "default",
                    "status_per_job": 2.0,
                    "lag_p99_s": 0.2,
                    "cpu_ms_per_request": 2.0,
                },
            ]
        },
    }


class TestMetrics:
    def test_the_catalogue(self) -> None:
        assert metrics(report()) == {
            "overhead.poll.cpu_ms_per_1000": 2.0,
            "overhead.poll.cpu_ratio_to_raw_aiohttp": 1.1,
            "overhead.create.cpu_ms_per_1000": 2.0,
            "overhead.create.cpu_ratio_to_raw_aiohttp": 1.3,
            "throughput.cpu_ms_per_1000_records": 250.0,
            POLLS: 3.0,
            LAG: 0.4,
            CPU: 6.0,
            "polling.ours.cpu_ratio_to_cheapest_peer": 3.0,
            "scale.halfway.bytes_per_job": 2000.0,
            "scale.1000_jobs.scheduler_cpu_us_per_poll": 14.0,
            "skew.server_10s_ahead.lag_p99_s": 0.3,
            "fleet.P2.split.status_per_job": 2.0,
            "fleet.P2.split.lag_p99_s": 0.25,
            "fleet.P2.split.cpu_ms_per_request": 6.0,
            "fleet.P2.split.cpu_ratio_to_default": 3.0,
        }

    def test_missing_sections_and_figures_are_left_out(self) -> None:
        partial = report()
        del partial["overhead"], partial["fleet"]
        del partial["polling"]["strategies"][0]["lag_p99_s"]
        found = metrics(partial)
        assert LAG not in found
        assert not any(name.startswith(("overhead.", "fleet.")) for name in found)
        assert metrics({"mode": "quick"}) == {}

    def test_the_recorded_full_report_reads(self) -> None:
        found = metrics(json.loads((RESULTS / "full.json").read_text()))
        assert {POLLS, LAG, CPU, "polling.ours.cpu_ratio_to_cheapest_peer"} <= found.keys()


class TestBaselineFile:
    def test_round_trip(self) -> None:
        data = json.loads(json.dumps(baseline(report())))
        assert data["format"] == BASELINE_FORMAT
        assert data["version"] == BASELINE_VERSION
        assert data["mode"] == "quick"
        assert data["runs"] == 1
        assert recorded_metrics(data) == metrics(report())

    def test_given_figures_are_recorded(self) -> None:
        data = baseline(report(), {CPU: 5.5}, runs=3)
        assert data["runs"] == 3
        assert recorded_metrics(data) == {CPU: 5.5}

    def test_a_whole_report_is_read_as_recorded_figures(self) -> None:
        assert recorded_metrics(report()) == metrics(report())

    def test_another_version_is_refused(self) -> None:
        data = {**baseline(report()), "version": BASELINE_VERSION + 1}
        with pytest.raises(ValueError, match="record it again"):
            recorded_metrics(data)

    def test_a_report_without_guarded_figures_is_refused(self) -> None:
        with pytest.raises(ValueError, match="none of the guarded metrics"):
            baseline({"mode": "quick"})

    def test_the_committed_quick_baseline_reads(self) -> None:
        data = json.loads((RESULTS / "baseline-quick.json").read_text())
        assert data["mode"] == "quick"
        assert {POLLS, LAG, CPU} <= recorded_metrics(data).keys()


def test_the_table() -> None:
    findings = compare({CPU: 10.0, LAG: 1.0}, {CPU: 11.6, LAG: 0.5, POLLS: 3.0})
    table = render_findings(findings, 0.15, "results/baseline-quick.json")
    lines = table.splitlines()
    assert lines[0] == (
        "### Regression check against results/baseline-quick.json (worse by more than 15% flags)"
    )
    assert f"| {CPU} | 10 | 11.6 | +16.0% | **regression** |" in lines
    assert f"| {LAG} | 1 | 0.5 | -50.0% | ok |" in lines
    assert f"| {POLLS} |  | 3 |  | not recorded |" in lines
    assert lines[-1] == f"1 of 3 metrics regressed: {CPU}."
    unjudged = render_findings(compare({CPU: 10.0}, {CPU: 11.6}, absolute_cpu=False), 0.15, "x")
    assert f"| {CPU} | 10 | 11.6 | +16.0% | not judged |" in unjudged.splitlines()
