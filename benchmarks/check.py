"""The regression guard: a run's figures against the ones recorded in ``benchmarks/results/``.

``python -m benchmarks --quick --check`` runs the quick suite, then compares it
with ``results/baseline-quick.json`` (written by ``--quick --record``); the full
run compares with ``results/baseline-full.json``, or with ``results/full.json``
(a whole report) while no full baseline is recorded. Everything here is pure:
the command line in ``run.py`` reads and writes the files.

Every guarded figure is lower-is-better (polls per job, lag p99, CPU per job,
bytes per job), so "worse" is always "higher". CPU is guarded twice: as
measured, and as a ratio to a peer measured in the same run (ours over the
cheapest polling loop, ours over raw aiohttp, the fleet over today's default).
The absolute figure catches a regression on a machine like the recording's;
the ratio still means something on a faster or busier machine, since both
sides of it ran on the same cores at the same time.

The baseline file (``BASELINE_FORMAT``, version ``BASELINE_VERSION``)::

    {
      "format": "gameball_async benchmark baseline",
      "version": 1,
      "mode": "quick",                # the run it was recorded from
      "machine": "2 cores x86_64, CPython 3.11.7, Linux ...",
      "when": "2026-12-07T01:47:47+00:00",
      "runs": 3,                      # the medians of how many runs (--repeat)
      "metrics": {"polling.ours.polls_per_job": 3.33, ...}
    }

A metric's name starts with its section (``overhead``, ``throughput``,
``polling``, ``scale``, ``skew``, ``fleet``); the catalogue is ``metrics()``.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "BASELINE_FORMAT",
    "BASELINE_VERSION",
    "DEFAULT_THRESHOLD",
    "Finding",
    "baseline",
    "best",
    "compare",
    "flagged_sections",
    "is_absolute_cpu",
    "median",
    "metrics",
    "recorded_metrics",
    "regressed",
    "render_findings",
]

BASELINE_FORMAT: Final = "gameball_async benchmark baseline"
BASELINE_VERSION: Final = 1
DEFAULT_THRESHOLD: Final = 0.15


@dataclass(frozen=True, slots=True)
class Finding:
    """One metric of the check.

    :ivar metric: the metric's name, ``section.what``.
    :ivar recorded: the recorded figure, ``None`` when the recording lacks it.
    :ivar now: this run's figure.
    :ivar ratio: ``now / recorded`` (above 1 is worse), ``None`` without a
        recorded figure or when the recorded one is 0 and so is ``now``.
    :ivar worse: ``now`` is worse than ``recorded`` by more than the threshold
        (never for a metric not judged).
    :ivar judged: whether the metric can fail the check (``compare``'s
        ``absolute_cpu=False`` leaves absolute CPU figures out).
    """

    metric: str
    recorded: float | None
    now: float
    ratio: float | None
    worse: bool
    judged: bool = True

    @property
    def verdict(self) -> str:
        """``regression``, ``ok``, ``not recorded`` or ``not judged``."""
        if self.recorded is None:
            return "not recorded"
        if not self.judged:
            return "not judged"
        return "regression" if self.worse else "ok"


def is_absolute_cpu(metric: str) -> bool:
    """Whether a metric is CPU time as measured (not a ratio to a peer of the same run)."""
    return "cpu_" in metric and "_ratio_" not in metric


def compare(
    recorded: Mapping[str, float],
    now: Mapping[str, float],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    absolute_cpu: bool = True,
) -> list[Finding]:
    """Each of ``now``'s metrics against its recorded figure, in ``now``'s order.

    Every metric is lower-is-better: one flags when ``now > recorded * (1 +
    threshold)``. A better figure never flags; a metric the recording lacks is
    reported as not recorded and never flags; recorded metrics this run did not
    measure (a section left out with ``--only``) are not reported.

    :param recorded: the recorded figures (``recorded_metrics`` of a file).
    :param now: this run's figures (``metrics`` of its report).
    :param threshold: how much worse, as a fraction, is a regression.
    :param absolute_cpu: whether CPU figures as measured can fail the check;
        without, they are reported as not judged and only the ratios to a peer
        of the same run count (for a machine other than the recording's).
    :raises ValueError: ``threshold`` is negative.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, not {threshold}")
    findings = []
    for name, value in now.items():
        before = recorded.get(name)
        if before is None:
            findings.append(Finding(name, None, value, None, False))
            continue
        if before > 0:
            ratio: float | None = value / before
        else:
            ratio = None if value == 0 else float("inf")
        judged = absolute_cpu or not is_absolute_cpu(name)
        worse = judged and (value > before * (1 + threshold) if before > 0 else value > 0)
        findings.append(Finding(name, before, value, ratio, worse, judged))
    return findings


def regressed(findings: Iterable[Finding]) -> bool:
    """Whether any finding is a regression."""
    return any(f.worse for f in findings)


def flagged_sections(findings: Iterable[Finding]) -> list[str]:
    """The sections (a metric's first name) with a regression, each once, in order."""
    return list(dict.fromkeys(f.metric.split(".", 1)[0] for f in findings if f.worse))


def median(runs: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Each metric's median over several runs of the same sections (``--repeat``).

    A metric counts if any run measured it (its median over those runs); the
    order is the first run's, then the others' new names.
    """
    seen: dict[str, list[float]] = {}
    for run in runs:
        for name, value in run.items():
            seen.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in seen.items()}


def best(*runs: Mapping[str, float]) -> dict[str, float]:
    """Each metric's best (lowest) figure over several runs of the same sections.

    A metric counts if any run measured it; the order is the first run's, then
    the others' new names.
    """
    found: dict[str, float] = {}
    for run in runs:
        for name, value in run.items():
            found[name] = min(found.get(name, value), value)
    return found


def render_findings(findings: Iterable[Finding], threshold: float, against: str) -> str:
    """The check's Markdown table: metric, recorded, now, change %, verdict.

    :param against: where the recorded figures came from, for the heading.
    """
    rows = list(findings)
    out = [
        f"### Regression check against {against} (worse by more than {threshold:.0%} flags)",
        "",
        "| metric | recorded | now | change | verdict |",
        "|---|---|---|---|---|",
    ]
    for f in rows:
        recorded = "" if f.recorded is None else _number(f.recorded)
        if f.ratio is None:
            change = ""
        elif f.ratio == float("inf"):
            change = "from 0"
        else:
            change = f"{f.ratio - 1:+.1%}"
        verdict = "**regression**" if f.worse else f.verdict
        out.append(f"| {f.metric} | {recorded} | {_number(f.now)} | {change} | {verdict} |")
    flagged = [f.metric for f in rows if f.worse]
    out += [
        "",
        f"{len(flagged)} of {len(rows)} metrics regressed"
        + (f": {', '.join(flagged)}." if flagged else "."),
    ]
    return "\n".join(out)


def _number(value: float) -> str:
    return f"{value:.4g}"


def baseline(
    report: Mapping[str, Any], figures: Mapping[str, float] | None = None, runs: int = 1
) -> dict[str, Any]:
    """The baseline file's content for a report (``run.py``'s JSON).

    :param report: the run's report; its mode, machine and time are recorded.
    :param figures: the figures to record, by default ``metrics(report)`` (with
        ``--repeat``, the medians of the runs).
    :param runs: how many runs ``figures`` come from.
    :raises ValueError: there is no guarded figure to record.
    """
    found = dict(metrics(report) if figures is None else figures)
    if not found:
        raise ValueError("the report has none of the guarded metrics")
    return {
        "format": BASELINE_FORMAT,
        "version": BASELINE_VERSION,
        "mode": report.get("mode"),
        "machine": report.get("machine"),
        "when": report.get("when"),
        "runs": runs,
        "metrics": found,
    }


def recorded_metrics(data: Mapping[str, Any]) -> dict[str, float]:
    """The recorded figures of a baseline file, or of a whole report (``full.json``).

    :raises ValueError: a baseline of another format version.
    """
    if data.get("format") == BASELINE_FORMAT:
        if data.get("version") != BASELINE_VERSION:
            raise ValueError(
                f"baseline format version {data.get('version')!r}, this check reads "
                f"{BASELINE_VERSION}: record it again with --record"
            )
        return {str(name): float(value) for name, value in data["metrics"].items()}
    return metrics(data)


def metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The guarded figures of a report, by name; a section or figure it lacks is left out."""
    found: dict[str, float] = {}
    _overhead(report.get("overhead"), found)
    _throughput(report.get("throughput"), found)
    _polling(report.get("polling"), found)
    _scale(report.get("scale"), found)
    _skew(report.get("skew"), found)
    _fleet(report.get("fleet"), found)
    return found


def _median(value: Any) -> float | None:
    """A figure that is either a number or a ``spread`` (its median)."""
    if isinstance(value, Mapping):
        value = value.get("median")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _put(found: dict[str, float], name: str, value: Any) -> None:
    number = _median(value)
    if number is not None:
        found[name] = number


def _overhead(section: Any, found: dict[str, float]) -> None:
    if not isinstance(section, Mapping):
        return
    cpu = section.get("cpu_ms_per_1000", {})
    _put(found, "overhead.poll.cpu_ms_per_1000", cpu.get("poll_ours"))
    _put(found, "overhead.poll.cpu_ratio_to_raw_aiohttp", section.get("ratio_poll"))
    _put(found, "overhead.create.cpu_ms_per_1000", cpu.get("create_ours"))
    _put(found, "overhead.create.cpu_ratio_to_raw_aiohttp", section.get("ratio_create"))


def _throughput(section: Any, found: dict[str, float]) -> None:
    if not isinstance(section, Mapping):
        return
    cpu = section.get("client_cpu_seconds", {})
    ours, records = _median(cpu.get("ours")), section.get("records")
    if ours is not None and isinstance(records, int) and records > 0:
        found["throughput.cpu_ms_per_1000_records"] = 1e6 * ours / records


def _polling(section: Any, found: dict[str, float]) -> None:
    if not isinstance(section, Mapping) or not section.get("strategies"):
        return
    rows = {row["strategy"]: row for row in section["strategies"]}
    ours = rows.pop("ours", None)
    if ours is None:
        return
    _put(found, "polling.ours.polls_per_job", ours.get("polls_per_job"))
    _put(found, "polling.ours.lag_p99_s", ours.get("lag_p99_s"))
    _put(found, "polling.ours.cpu_ms_per_job", ours.get("cpu_ms_per_job"))
    peers = [row["cpu_ms_per_job"] for row in rows.values() if row.get("cpu_ms_per_job")]
    if peers and ours.get("cpu_ms_per_job") is not None:
        # the report's own target compares with the cheapest peer
        found["polling.ours.cpu_ratio_to_cheapest_peer"] = ours["cpu_ms_per_job"] / min(peers)


def _scale(section: Any, found: dict[str, float]) -> None:
    if not isinstance(section, Mapping):
        return
    halfway = section.get("halfway", {})
    _put(found, "scale.halfway.bytes_per_job", halfway.get("bytes_per_job", {}).get("ours"))
    for count, us in section.get("scheduler_cpu_us_per_poll", {}).items():
        _put(found, f"scale.{count}_jobs.scheduler_cpu_us_per_poll", us)


def _skew(section: Any, found: dict[str, float]) -> None:
    if not isinstance(section, Mapping):
        return
    for case, lag in section.get("lag_s", {}).items():
        _put(found, f"skew.{case}.lag_p99_s", lag.get("p99"))


def _fleet(section: Any, found: dict[str, float]) -> None:
    if not isinstance(section, Mapping):
        return
    rows = section.get("rows", [])
    default = {(r["processes"], r["scenario"]): r for r in rows if r.get("setup") == "default"}
    for r in rows:
        if r.get("setup") != "fleet":
            continue
        key = (r["processes"], r["scenario"])
        name = f"fleet.P{key[0]}.{key[1]}"
        _put(found, f"{name}.status_per_job", r.get("status_per_job"))
        _put(found, f"{name}.lag_p99_s", r.get("lag_p99_s"))
        _put(found, f"{name}.cpu_ms_per_request", r.get("cpu_ms_per_request"))
        peer = default.get(key, {}).get("cpu_ms_per_request")
        if peer and r.get("cpu_ms_per_request") is not None:
            found[f"{name}.cpu_ratio_to_default"] = r["cpu_ms_per_request"] / peer
