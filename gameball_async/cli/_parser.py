"""The argument parser of ``gameball-batch``: commands, options, the exit codes in ``--help``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Final

# The package's own version (one source), not a copy kept here.
from gameball_async import DEFAULT_BASE_URL, Operation, __version__
from gameball_async._seam import MAX_BATCH_ITEMS

__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "SECRET_KEY_ENV", "build_parser"]

API_KEY_ENV: Final = "GAMEBALL_API_KEY"
SECRET_KEY_ENV: Final = "GAMEBALL_SECRET_KEY"
BASE_URL_ENV: Final = "GAMEBALL_BASE_URL"
_EPILOG: Final = f"""\
credentials:
  --api-key / --secret-key, or the environment variables {API_KEY_ENV} and
  {SECRET_KEY_ENV} (preferred: command-line flags show up in process lists).
  They are never printed. {BASE_URL_ENV} sets the base URL.

exit codes (submit and resume):
  0    every record succeeded
  1    some records failed, were not processed, or were rejected (--skip-invalid)
  2    usage error (bad arguments, missing credentials, existing run files)
  3    invalid input: nothing was sent (bad records are listed with line and field)
  4    submission errors: some records were not sent, may have been sent
       (never resent), or have no outcome yet (run `resume`)
  130  interrupted (Ctrl-C; a second one aborts at once); `gameball-batch resume
       MANIFEST` finishes the run
status, stop and watch exit 0 when every job was read (watch: and completed with
no failed item), else 1. fleet exits 0, or 1 when a --once read failed or no
namespace was found.
"""


def _add_global_options(parser: argparse.ArgumentParser, *, sub: bool) -> None:
    # Accepted before and after the command; in the subcommand copy the
    # defaults are SUPPRESS so they never overwrite a value given before it.
    default: Any = argparse.SUPPRESS if sub else None
    parser.add_argument(
        "--api-key", default=default, metavar="KEY", help=f"API key (default: ${API_KEY_ENV})"
    )
    parser.add_argument(
        "--secret-key",
        default=default,
        metavar="KEY",
        help=f"secret key (default: ${SECRET_KEY_ENV})",
    )
    parser.add_argument(
        "--base-url",
        default=default,
        metavar="URL",
        help=f"API base URL (default: ${BASE_URL_ENV} or {DEFAULT_BASE_URL})",
    )
    parser.add_argument(
        "--no-live",
        action="store_true",
        default=argparse.SUPPRESS if sub else False,
        help="plain output, no live display (the default when not a terminal)",
    )
    # Poll faster than the API deserves: for tests and the fake server only.
    parser.add_argument(
        "--poll-interval", type=_positive_float, default=default, help=argparse.SUPPRESS
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _chunk_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_BATCH_ITEMS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_ITEMS:,}, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="creation requests in flight at once (default 4)",
    )
    parser.add_argument(
        "--max-pending-jobs",
        type=_positive_int,
        default=200,
        metavar="N",
        help="created jobs not yet finished before sending waits (default 200)",
    )
    parser.add_argument(
        "--stop-on-interrupt",
        action="store_true",
        help="on Ctrl-C also stop the remote jobs (default: they keep running)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gameball-batch``."""
    parser = argparse.ArgumentParser(
        prog="gameball-batch",
        description="Send bulk files to Gameball's Batch API and follow the jobs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, sub=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = argparse.ArgumentParser(add_help=False)
    _add_global_options(sub, sub=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            parents=[sub],
            help=help_text,
            description=help_text,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = command("submit", "validate a JSONL or CSV file, send it in batch jobs, record outcomes")
    p.add_argument(
        "operation",
        choices=[op.value for op in Operation],
        metavar="OPERATION",
        help=", ".join(op.value for op in Operation),
    )
    p.add_argument("file", metavar="FILE", help="a .jsonl or .csv file, or - for stdin")
    p.add_argument(
        "--format", choices=("jsonl", "csv"), help="input format (default: by extension)"
    )
    p.add_argument(
        "--results",
        type=Path,
        metavar="PATH",
        help="outcome of every record (default: FILE.results.jsonl)",
    )
    p.add_argument(
        "--manifest",
        type=Path,
        metavar="PATH",
        help="job ids as they are created (default: FILE.manifest.jsonl)",
    )
    p.add_argument(
        "--rejects", type=Path, metavar="PATH", help="invalid records (default: FILE.rejects.jsonl)"
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="send the valid records and write the invalid ones to the rejects file",
    )
    p.add_argument(
        "--chunk-size",
        type=_chunk_size,
        default=MAX_BATCH_ITEMS,
        metavar="N",
        help=f"records per job, 1-{MAX_BATCH_ITEMS:,} (default {MAX_BATCH_ITEMS:,})",
    )
    p.add_argument(
        "--max-errors",
        type=_positive_int,
        default=20,
        metavar="N",
        help="invalid records shown (all go to the rejects file; default 20)",
    )
    p.add_argument(
        "--force", action="store_true", help="overwrite the results and manifest of an earlier run"
    )
    _add_run_options(p)

    p = command("resume", "reattach to the jobs of an interrupted run and finish its results")
    p.add_argument("manifest", type=Path, metavar="MANIFEST")
    p.add_argument(
        "--input",
        type=Path,
        metavar="PATH",
        help="the input file, if it moved (it must be unchanged)",
    )
    _add_run_options(p)

    for name, text in (
        ("status", "show the status of jobs"),
        ("stop", "stop jobs"),
        ("watch", "follow jobs until they end"),
    ):
        p = command(name, text)
        p.add_argument("job_ids", nargs="+", metavar="JOB_ID")
        if name == "status":
            p.add_argument("--json", action="store_true", help="one JSON object per job")

    p = command(
        "fleet",
        "a live, read-only view of a fleet's jobs, limiter and processes in Redis "
        "(no API key needed; needs the redis extra)",
    )
    p.add_argument(
        "--redis", required=True, metavar="URL", help="the fleet's Redis (redis:// or rediss://)"
    )
    p.add_argument(
        "--namespace",
        metavar="NS",
        help="the account's namespace in Redis (default: list the namespaces found)",
    )
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument(
        "--json",
        action="store_true",
        help="the snapshot as JSON (with --once one document, else one line per refresh)",
    )
    p.add_argument(
        "--refresh",
        type=_positive_float,
        default=1.0,
        metavar="S",
        help="seconds between reads (default 1)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="seconds one read may take before it counts as failed (default 2)",
    )
    p.add_argument(
        "--ended-minutes",
        type=_positive_float,
        default=15.0,
        metavar="M",
        help="show the jobs that ended in the last M minutes (default 15)",
    )

    p = command("demo", "run a realistic fan-out against an embedded fake server")
    p.add_argument(
        "--records",
        type=_positive_int,
        default=50_000,
        metavar="N",
        help="cashback records (default 50,000)",
    )
    p.add_argument(
        "--jobs",
        type=_positive_int,
        default=50,
        metavar="N",
        help="jobs to spread them over (default 50)",
    )
    p.add_argument(
        "--job-seconds",
        type=_positive_float,
        default=8.0,
        metavar="S",
        help="how long the fake takes per job (default 8)",
    )
    p.add_argument(
        "--dir",
        type=Path,
        metavar="PATH",
        help="where to write the files (default: a new temporary directory)",
    )
    return parser
