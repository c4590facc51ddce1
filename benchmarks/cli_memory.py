"""Memory benchmark: peak RSS of ``gameball-batch submit`` as the input grows 10x.

The fake server runs in its own process (``python -m gameball_async.testing
serve --no-rate-limit --processing-rate 100000``), so its memory is not
counted. Each measurement runs one child process through a small launcher
that reports ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the peak RSS
of that child alone. Cases, each repeated:

- ``baseline``: a child that only imports ``gameball_async`` and ``rich``;
- ``submit 10k`` and ``submit 100k``: ``python -m gameball_async submit
  cashback FILE --no-live`` on a 10,000- and a 100,000-line JSONL file
  (each run gets fresh transaction ids, so every record succeeds).

The client keeps its default rate limit (30 requests/s, 360 per 30 s) and
poll policy, as a user's run would. A flat profile means the 100k run peaks
within a few MiB of the 10k run.

Run: ``python benchmarks/cli_memory.py [--repeat 3] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Runs a command and prints its own children's peak RSS (KiB on Linux, bytes on macOS).
LAUNCHER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": done.returncode, "maxrss": usage.ru_maxrss,
                  "seconds": time.perf_counter() - started, "stderr": done.stderr[-2000:]}))
"""

BASELINE = "import gameball_async, rich, rich.live, rich.table, rich.progress_bar"


def rss_mib(raw: int) -> float:
    """``ru_maxrss`` in MiB (it is KiB on Linux, bytes on macOS)."""
    return raw / (1024 * 1024) if sys.platform == "darwin" else raw / 1024


def write_input(path: Path, lines: int, prefix: str) -> None:
    """A cashback JSONL file of ``lines`` records with unique transaction ids."""
    with path.open("w", encoding="utf-8") as out:
        for n in range(lines):
            out.write(
                f'{{"customerId":"cust-{n % 5000}","transactionId":"{prefix}-{n}",'
                f'"transactionTime":"2024-10-16T08:13:29.290Z","amount":{5 + n % 40}}}\n'
            )


def measure(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``command`` under the launcher; return its exit code, peak RSS and time."""
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    report: dict[str, Any] = json.loads(launched.stdout)
    if report["rc"] not in (0,):
        raise RuntimeError(f"{command[:4]} exited {report['rc']}: {report['stderr']}")
    report["rss_mib"] = rss_mib(report.pop("maxrss"))
    return report


def start_fake() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The fake server in its own process, and its connection details."""
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gameball_async.testing",
            "serve",
            "--no-rate-limit",
            "--processing-rate",
            "100000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None
    info: dict[str, str] = json.loads(fake.stdout.readline())
    return fake, info


def summarize(values: list[float]) -> dict[str, float]:
    """Median and spread."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    """Run the benchmark and print (and optionally save) the figures."""
    # imported here: this file also runs as a script (see the end of the file)
    from benchmarks._common import run_main

    run_main(__doc__, _arguments, _run)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--json", type=Path, help="also write the figures here")


def _run(args: argparse.Namespace) -> None:
    fake, info = start_fake()
    env = {
        **os.environ,
        "GAMEBALL_API_KEY": info["api_key"],
        "GAMEBALL_SECRET_KEY": info["secret_key"],
    }
    cases: dict[str, list[dict[str, Any]]] = {"baseline": []}
    try:
        with tempfile.TemporaryDirectory(prefix="cli-memory-") as folder:
            for run in range(args.repeat):
                cases["baseline"].append(measure([sys.executable, "-c", BASELINE], env))
                for size in args.sizes:
                    source = Path(folder) / f"cashback-{size}-{run}.jsonl"
                    write_input(source, size, prefix=f"r{run}s{size}")
                    report = measure(
                        [
                            sys.executable,
                            "-m",
                            "gameball_async",
                            "--base-url",
                            info["base_url"],
                            "--no-live",
                            "submit",
                            "cashback",
                            str(source),
                        ],
                        env,
                    )
                    results = source.with_name(source.name + ".results.jsonl")
                    with results.open("rb") as handle:
                        report["results_lines"] = sum(1 for _ in handle)
                    assert report["results_lines"] == size
                    cases.setdefault(f"submit {size:,}", []).append(report)
                    source.unlink()
    finally:
        fake.terminate()
        fake.communicate(timeout=10)

    figures: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "repeat": args.repeat,
        "cases": {},
    }
    print(f"{'case':<16} {'peak RSS MiB (median [min-max])':<34} {'seconds (median)':>16}")
    for name, reports in cases.items():
        rss = summarize([r["rss_mib"] for r in reports])
        seconds = statistics.median(r["seconds"] for r in reports)
        figures["cases"][name] = {"rss_mib": rss, "seconds": seconds}
        spread = f"{rss['median']:.1f} [{rss['min']:.1f}-{rss['max']:.1f}]"
        print(f"{name:<16} {spread:<34} {seconds:>16.1f}")
    base = figures["cases"]["baseline"]["rss_mib"]["median"]
    first = args.sizes[0]
    smallest = figures["cases"][f"submit {first:,}"]["rss_mib"]["median"]
    figures["growth_mib"] = {}
    for size in args.sizes[1:]:
        peak = figures["cases"][f"submit {size:,}"]["rss_mib"]["median"]
        figures["growth_mib"][str(size)] = peak - smallest
        print(
            f"input x{size // first} ({first:,} -> {size:,} lines): peak RSS "
            f"{peak - smallest:+.1f} MiB ({smallest - base:+.1f} -> {peak - base:+.1f} MiB "
            "over the import-only baseline)"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    # ``python benchmarks/cli_memory.py`` puts benchmarks/ on the path, not its parent
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
