"""Run every benchmark, write the figures as JSON and as Markdown tables.

``python -m benchmarks`` (full, about 47 minutes on 2 cores) or
``python -m benchmarks --quick`` (under 3 minutes, a smoke run). Results go to
``benchmarks/results/<mode>.json`` and ``<mode>.md``; the full run also draws
``benchmarks/results/polling.png``. ``--record`` also writes the run's guarded
figures to ``results/baseline-<mode>.json``; ``--check`` compares the run with
them and exits with ``EXIT_REGRESSION`` when one is worse by more than
``--threshold`` (see ``benchmarks/check.py``); ``--repeat N`` runs the suite N
times and records or checks each figure's median.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import check, fleet, overhead, polling, scale, skew, throughput
from ._common import machine, run_main

HERE = Path(__file__).resolve().parent
# 1 is an uncaught exception's and 2 argparse's: CI reports a regression but
# must still fail on a benchmark that broke
EXIT_REGRESSION = 3
SECTIONS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "overhead": overhead.run,
    "throughput": throughput.run,
    "polling": polling.run,
    "scale": scale.run,
    "skew": skew.run,
    "fleet": fleet.run,
}


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _fmt(s: dict[str, float], digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def render(report: dict[str, Any]) -> str:
    """The Markdown tables of a report."""
    out = [f"Machine: {report['machine']}. Run: {report['when']}, mode `{report['mode']}`.", ""]
    if "overhead" in report:
        o = report["overhead"]
        cpu = o["cpu_ms_per_1000"]
        out += [
            "### Per-request overhead (client CPU ms per 1,000 calls, median (min-max))",
            "",
            "| call | gameball_async | raw aiohttp | ratio | target |",
            "|---|---|---|---|---|",
            f"| status poll | {_fmt(cpu['poll_ours'], 0)} | {_fmt(cpu['poll_raw'], 0)} | "
            f"{_fmt(o['ratio_poll'])} | <= {o['target_poll']} "
            f"{_met(o['ratio_poll']['median'] <= o['target_poll'])} |",
            f"| creation ({o['items_per_batch']} records) | {_fmt(cpu['create_ours'], 0)} | "
            f"{_fmt(cpu['create_raw'], 0)} | {_fmt(o['ratio_create'])} | <= {o['target_create']} "
            f"{_met(o['ratio_create']['median'] <= o['target_create'])} |",
            "",
        ]
    if "throughput" in report:
        t = report["throughput"]
        rps = t["records_per_second"]
        out += [
            f"### Submission throughput ({t['records']:,} cashback records, "
            f"batches of {t['batch']}, {t['concurrency']} in flight)",
            "",
            "| | gameball_async | raw aiohttp, pre-serialised JSON |",
            "|---|---|---|",
            f"| records/s end to end | {_fmt(rps['ours'], 0)} | {_fmt(rps['raw'], 0)} |",
            f"| client CPU s | {_fmt(t['client_cpu_seconds']['ours'])} | "
            f"{_fmt(t['client_cpu_seconds']['raw'])} |",
            "",
            f"Ratio of records/s: {_fmt(t['ratio_records_per_second'])}. Validation and "
            f"conversion (records built by a generator included): "
            f"{_fmt(t['validate_and_encode_cpu_seconds'])} CPU s, "
            f"{t['validate_and_encode_share_of_ours_cpu']['median']:.0%} of ours' client CPU.",
            "",
        ]
    if "polling" in report:
        p = report["polling"]
        rows = p["strategies"]
        ours = rows[0]
        out += [
            f"### Polling strategies ({p['jobs']} jobs, {p['item_counts']}; "
            "fake enforces 30/s and 360/30 s)",
            "",
            "| strategy | polls/job | lag p50 s | lag p99 s | 429s | CPU ms/1k polls "
            "| CPU ms/job | wall s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            spread = r.get("cpu_ms_per_job_spread")
            per_job = _fmt(spread, 1) if spread else f"{r['cpu_ms_per_job']:.1f}"
            out.append(
                f"| {r['strategy']} | {r['polls_per_job']} | {r['lag_p50_s']} | "
                f"{r['lag_p99_s']} | {r['rate_limited_429']} | {r['cpu_ms_per_1000_polls']} | "
                f"{per_job} | {r['wall_s']} |"
            )
        peers = rows[1:]
        fewer = all(ours["polls_per_job"] < r["polls_per_job"] for r in peers)
        lower = all(ours["lag_p99_s"] < r["lag_p99_s"] for r in peers)
        cheapest = min(peers, key=lambda r: r["cpu_ms_per_job"])
        cpu_ratio = ours["cpu_ms_per_job"] / cheapest["cpu_ms_per_job"]
        d = p["drain"]
        out += [
            "",
            f"Rounds: {ours.get('rounds', 1)} (each figure the median; CPU ms/job with (min-max)).",
            "",
            f"Ours against every peer: fewer polls per job {_met(fewer)}; lower p99 lag "
            f"{_met(lower)}; zero 429s {_met(ours['rate_limited_429'] == 0)}; client CPU per "
            f"job {ours['cpu_ms_per_job']:.1f} ms against the cheapest peer's "
            f"({cheapest['strategy']}) {cheapest['cpu_ms_per_job']:.1f} ms, {cpu_ratio:.2f}x "
            f"(target <= 1.0: {_met(cpu_ratio <= 1.0)}).",
            "",
            f"Drain of {d['jobs']} finished jobs: {d['polls']} polls in {d['wall_s']} s against "
            f"a lower bound of {d['lower_bound_s']} s set by the rate limit: "
            f"{d['ratio_to_bound']}x (target <= {d['target_ratio']}: "
            f"{_met(d['ratio_to_bound'] is not None and d['ratio_to_bound'] <= d['target_ratio'])}"
            f"); 429s: {d['rate_limited_429']}.",
            "",
        ]
    if "scale" in report and "halfway" in report["scale"]:
        h = report["scale"]["halfway"]
        b = h["bytes_per_job"]
        n = h["jobs"]
        out += [
            f"### Memory per awaited job halfway through {h['items']:,}-item batches "
            f"({h['finished']} results so far; tracemalloc bytes per job, median (min-max))",
            "",
            "| how | jobs | bytes per job | ratio to ours |",
            "|---|---|---|---|",
            f"| ours (`wait_all`, running replies decoded without results) | {n['ours']:,} | "
            f"{_fmt(b['ours'], 0)} | 1.0 |",
            f"| of which the `BatchStatus` objects the handles hold | {n['ours']:,} | "
            f"{_fmt(b['ours_statuses'], 0)} | |",
            f"| of which everything else (handle, scheduler entry, `wait_all`) | {n['ours']:,} | "
            f"{_fmt(b['ours_beyond_statuses'], 0)} | |",
            f"| baseline: running replies decoded with results (0.1.0) | {n['with_results']:,} | "
            f"{_fmt(b['with_results'], 0)} | {h['ratio_with_results_to_ours']} |",
            f"| baseline: naive task per job keeping `await resp.json()` | {n['naive']:,} | "
            f"{_fmt(b['naive'], 0)} | {h['ratio_naive_to_ours']} |",
            "",
            f"Target under {h['target_bytes']} B per job: all told "
            f"{_met(b['ours']['median'] < h['target_bytes'])}; beyond the statuses "
            f"{_met(b['ours_beyond_statuses']['median'] < h['target_bytes'])}.",
            "",
        ]
    if "skew" in report:
        k = report["skew"]
        out += [
            f"### Clock skew ({k['jobs']} jobs, {k['item_counts']}; {k['rounds']} rounds, "
            "median (min-max); ratios to no `startedAt` in the same round)",
            "",
            "| server | lag p50 s | lag p99 s | p50 ratio | p99 ratio | target <= "
            f"{k['target_ratio']} |",
            "|---|---|---|---|---|---|",
        ]
        for case, lag in k["lag_s"].items():
            ok = max(lag["ratio_p50"]["median"], lag["ratio_p99"]["median"]) <= k["target_ratio"]
            out.append(
                f"| {case.replace('_', ' ')} | {_fmt(lag['p50'], 3)} | {_fmt(lag['p99'], 3)} | "
                f"{_fmt(lag['ratio_p50'])} | {_fmt(lag['ratio_p99'])} | "
                f"{'' if case == 'no_started_at' else _met(ok)} |"
            )
        out.append("")
    if "fleet" in report:
        out += _fleet(report["fleet"])
    if "scale" in report:
        s = report["scale"]
        out += [
            "### Scale (bytes per awaited job, handle included; scheduler CPU per poll)",
            "",
            "| jobs | wait_all | task per job (wait) | naive task per job | scheduler us/poll |",
            "|---|---|---|---|---|",
        ]
        for count, mem in s["memory_bytes_per_awaited_job"].items():
            out.append(
                f"| {int(count):,} | {mem['wait_all']} | {mem['task_per_job']} | {mem['naive']} "
                f"| {s['scheduler_cpu_us_per_poll'][count]} |"
            )
        out.append("")
    return "\n".join(out)


def _fleet(figures: dict[str, Any]) -> list[str]:
    """The fleet section: the table of every run, then the targets."""
    rows: list[dict[str, Any]] = figures["rows"]
    base = figures["baseline"]
    shared = figures.get("shared_polling", True)
    rounds = figures.get("rounds", 1)
    out = [
        f"### Fleet: P processes on one account ({figures['jobs']} jobs, "
        f"{figures['item_counts']}; one fake enforcing 30/s and 360/30 s)",
        "",
        f"*split*, *skew* and the baseline: median of {rounds} interleaved rounds (lag p99 "
        "with (min-max)), 429s summed over the rounds; *same*: one round. Redis round "
        "trips: commands the clients sent (the Lua scripts' own commands not counted).",
        "",
        "| P | scenario | setup | status req/job | 429s | lag p50 s | lag p99 s "
        "| Redis round trips | Redis/HTTP req | CPU ms/req | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in [base, *rows]:
        setup = "default (baseline)" if r is base else r["setup"]
        if r["setup"] == "fleet" and r["scenario"] == "same" and not shared:
            setup += " (before shared polling)"
        p99 = _fmt(r["lag_p99_s_spread"], 3) if "lag_p99_s_spread" in r else r["lag_p99_s"]
        out.append(
            f"| {r['processes']} | {r['scenario']} | {setup} | {r['status_per_job']:.2f} | "
            f"{r['rate_limited_429']} | {r['lag_p50_s']:.3f} | {p99} | "
            f"{r['redis_round_trips']:.0f} | {r['redis_per_request']:.2f} | "
            f"{r['cpu_ms_per_request']:.2f} | {r['wall_s']:.1f} |"
        )
    fleet = {(r["processes"], r["scenario"]): r for r in rows if r["setup"] == "fleet"}
    targets = figures["targets"]
    no_429 = [r["rate_limited_429"] for r in fleet.values()]
    same = {p: fleet[p, "same"]["status_per_job"] / base["status_per_job"] for p, _ in fleet}
    # per round (the split and skew runs of one round are neighbours), median over rounds
    skew = {int(p): s["median"] for p, s in figures.get("skew_p99_ratio", {}).items()} or {
        p: fleet[p, "skew"]["lag_p99_s"] / max(fleet[p, "split"]["lag_p99_s"], 1e-9)
        for p, _ in fleet
    }
    o = figures["limiter_overhead"]

    def ratios(found: dict[int, float]) -> str:
        return ", ".join(f"P={p}: {ratio:.2f}x" for p, ratio in sorted(found.items()))

    met_same = max(same.values()) <= targets["same_polls_ratio"]
    before = "" if shared else " (before shared polling)"
    out += [
        "",
        "| target | figure | status |",
        "|---|---|---|",
        f"| 0 429s with the fleet, every P and scenario | {sum(no_429)} in all | "
        f"{_met(not any(no_429))} |",
        f"| *same*: status requests per job with the fleet within "
        f"{targets['same_polls_ratio']}x of one process's ({base['status_per_job']}) | "
        f"{ratios(same)} | {_met(met_same)}{before} |",
        f"| *skew*: lag p99 with the fleet within {targets['skew_p99_ratio']}x of *split*'s "
        f"(median of the rounds' ratios) "
        f"| {ratios(skew)} | {_met(max(skew.values()) <= targets['skew_p99_ratio'])} |",
        f"| limiter overhead under {o['target_ms']} ms per request ({o['requests']} "
        f"acquire/release pairs, never made to wait) | {o['fleet_ms_per_request']} ms wall, "
        f"{o['fleet_cpu_ms_per_request']} ms CPU, {o['round_trips_per_request']} round trips "
        f"(local limiter: {o['local_ms_per_request']} ms; a bare script call: "
        f"{o.get('bare_script_ms_per_request', '-')} ms wall, "
        f"{o.get('bare_script_cpu_ms_per_request', '-')} ms CPU); "
        f"{o.get('burst_tasks', '-')} tasks "
        f"at once: {o.get('burst_ms_per_request', '-')} ms wall, "
        f"{o.get('burst_cpu_ms_per_request', '-')} ms CPU, "
        f"{o.get('burst_round_trips_per_request', '-')} round trips | "
        f"{_met(o['fleet_ms_per_request'] < o['target_ms'])} |",
        "",
    ]
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    """Polls per job against p99 detection lag, one point per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["polling"]["strategies"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for r in rows:
        ours = r["strategy"] == "ours"
        ax.scatter(
            r["polls_per_job"],
            r["lag_p99_s"],
            s=90 if ours else 50,
            color="tab:green" if ours else "tab:gray",
            zorder=3,
        )
        ax.scatter(
            r["polls_per_job"],
            r["lag_p50_s"],
            s=25,
            marker="x",
            color="tab:green" if ours else "tab:gray",
            zorder=3,
        )
        ax.annotate(
            r["strategy"],
            (r["polls_per_job"], r["lag_p99_s"]),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=9,
        )
    ax.set_xlabel("polls per job (fewer is better)")
    ax.set_ylabel("detection lag after the job ended, s\n(dot: p99, cross: p50)")
    ax.set_title(f"Polling {report['polling']['jobs']} jobs of varied length")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    """``python -m benchmarks``: run the sections, save and print the report."""
    run_main("Run the gameball_async benchmarks.", _arguments, _run)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--render", action="store_true", help="only re-render the last report")
    parser.add_argument("--quick", action="store_true", help="smoke run, under 3 minutes")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"compare with the recorded figures, exit {EXIT_REGRESSION} on a regression",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=check.DEFAULT_THRESHOLD,
        help="how much worse is a regression, as a fraction (default %(default)s)",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="write this run's figures to results/baseline-<mode>.json",
    )
    parser.add_argument(
        "--repeat",
        type=_at_least_one,
        default=1,
        metavar="N",
        help="run the suite N times; --check and --record take each figure's median",
    )
    parser.add_argument(
        "--no-absolute-cpu",
        dest="absolute_cpu",
        action="store_false",
        help="with --check, judge CPU by the ratios to peers of the same run only "
        "(on a machine other than the recording's)",
    )
    parser.add_argument(
        "--no-rerun",
        dest="rerun",
        action="store_false",
        help="with --check, do not run the sections with a regression once more",
    )


def _at_least_one(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {count}")
    return count


def _recorded(mode: str) -> tuple[Path, dict[str, float]]:
    """The file ``--check`` compares with, and its figures: the mode's baseline,
    or in full mode while none is recorded, the last full report."""
    results = HERE / "results"
    candidates = [results / f"baseline-{mode}.json"]
    if mode == "full":
        candidates.append(results / "full.json")
    for path in candidates:
        if path.exists():
            try:
                return path, check.recorded_metrics(json.loads(path.read_text()))
            except ValueError as exc:
                raise _refusal(f"--check: {path}: {exc}") from None
    quick = " --quick" if mode == "quick" else ""
    raise _refusal(
        f"--check: no {candidates[0].name} in {results}; record one with "
        f"`python -m benchmarks{quick} --record`"
    )


def _refusal(message: str) -> SystemExit:
    """Print why ``--check`` cannot start; raise the result (argparse's exit status, 2)."""
    print(message, file=sys.stderr)
    return SystemExit(2)


def _run(args: argparse.Namespace) -> None:
    mode = "quick" if args.quick else "full"
    results = HERE / "results"
    # read before the run: a full run rewrites full.json
    recorded = _recorded(mode) if args.check else None
    if args.render:
        report = json.loads((results / f"{mode}.json").read_text())
        (results / f"{mode}.md").write_text(render(report) + "\n")
        print(render(report))
        reports = [report]
    else:
        reports = []
        for i in range(args.repeat):
            if args.repeat > 1:
                print(f"\n== run {i + 1} of {args.repeat}", flush=True)
            reports.append(_measure(args, mode))
        report = reports[-1]
    sections = args.only or list(SECTIONS)
    prefixes = tuple(f"{name}." for name in sections)
    figures = {
        k: v
        for k, v in check.median(check.metrics(r) for r in reports).items()
        if k.startswith(prefixes)
    }
    if args.record:
        _record(report, figures, len(reports), results / f"baseline-{mode}.json", prefixes)
    if recorded is not None:
        _check(args, figures, len(reports), *recorded)


def _check(
    args: argparse.Namespace,
    now: dict[str, float],
    runs: int,
    against: Path,
    recorded: dict[str, float],
) -> None:
    """Compare this run's figures with the recorded ones, print the table, exit
    ``EXIT_REGRESSION`` on a regression. The sections with a regression run once
    more first (unless ``--no-rerun`` or ``--render``), each figure the better
    of the two: a figure worse in one run only is the machine's noise."""
    findings = check.compare(recorded, now, args.threshold, absolute_cpu=args.absolute_cpu)
    again = check.flagged_sections(findings)
    note = f"\n\nEach figure the median of {runs} runs." if runs > 1 else ""
    if again and args.rerun and not args.render:
        print(
            f"\n--check: {', '.join(again)} worse than recorded; running them once more", flush=True
        )
        second = check.metrics(_sections(args.quick, again))
        now = check.best(now, {k: v for k, v in second.items() if k in now})
        findings = check.compare(recorded, now, args.threshold, absolute_cpu=args.absolute_cpu)
        note += f"\n\n{', '.join(again)}: each figure the better of that and a second run."
    print()
    where = str(against.relative_to(HERE.parent))
    print(check.render_findings(findings, args.threshold, where) + note)
    if check.regressed(findings):
        sys.exit(EXIT_REGRESSION)


def _sections(quick: bool, names: list[str]) -> dict[str, Any]:
    """Run the named sections (in the suite's order), each one's figures by its name."""
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    figures: dict[str, Any] = {}
    for name, section in SECTIONS.items():
        if name not in names:
            continue
        started = time.perf_counter()
        figures[name] = {**section(quick), "when": when}
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    return figures


def _measure(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """Run the sections, save the report and its tables, print the tables."""
    report: dict[str, Any] = {"mode": mode, "machine": machine()}
    figures = _sections(args.quick, args.only or list(SECTIONS))
    report["when"] = next(iter(figures.values()))["when"]
    report.update(figures)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    saved = results / f"{mode}.json"
    if args.only and saved.exists():
        # A partial run updates its sections of the last full report; the
        # sections' own "when" says which run each figure came from.
        report = {**json.loads(saved.read_text()), **report}
    saved.write_text(json.dumps(report, indent=2) + "\n")
    table = render(report)
    (results / f"{mode}.md").write_text(table + "\n")
    if "polling" in report and not args.quick:
        plot(report, results / "polling.png")
    print(table)
    return report


def _record(
    report: dict[str, Any],
    figures: dict[str, float],
    runs: int,
    path: Path,
    prefixes: tuple[str, ...],
) -> None:
    """Write the baseline of the sections run; the others' recorded figures are kept."""
    recorded = check.baseline(report, figures, runs)
    if path.exists():
        old = check.recorded_metrics(json.loads(path.read_text()))
        kept = {k: v for k, v in old.items() if not k.startswith(prefixes)}
        recorded["metrics"] = {**kept, **recorded["metrics"]}
    path.write_text(json.dumps(recorded, indent=2) + "\n")
    print(f"\nrecorded {len(recorded['metrics'])} figures in {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
