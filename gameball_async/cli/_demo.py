"""``gameball-batch demo``: the submit path, end to end, against an in-process fake.

It writes a cashback file (a couple of invalid lines, some records bound to
fail per item: unknown customers (7000) and repeated transaction ids (9004)),
starts :class:`~gameball_async.testing.FakeGameball` with a few random 429s on
status polls, and runs exactly what ``gameball-batch submit --skip-invalid``
runs. No credentials, no network.
"""

from __future__ import annotations

import json
import math
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Final

import anyio

from gameball_async import GameballSession, Operation, PollPolicy
from gameball_async._seam import MAX_BATCH_ITEMS

from ._exit import EXIT_FAILED, EXIT_OK
from ._options import POLLS_IN_FLIGHT, SubmitOptions
from ._submit import submit
from ._track import RunInterface

__all__ = ["demo", "write_demo_file"]

_CUSTOMERS: Final = 1000
# Records bound to fail: an unknown customer every ~2,000, a repeated id every ~2,500.
_GHOST_EVERY: Final = 1999
_REPEAT_EVERY: Final = 2503


def write_demo_file(path: Path, records: int) -> tuple[int, int]:
    """Write the demo's cashback JSONL; return ``(bound_to_fail, invalid_lines)``."""
    start = datetime(2024, 10, 16, 8, 0, tzinfo=timezone.utc)
    failing = invalid = 0
    with path.open("w", encoding="utf-8") as out:
        for n in range(records):
            customer = f"cust-{n % _CUSTOMERS}"
            transaction = f"tx-{n}"
            if n % _GHOST_EVERY == 17:
                customer, failing = f"ghost-{n}", failing + 1
            elif n % _REPEAT_EVERY == 101:
                transaction, failing = f"tx-{n - 1}", failing + 1
            when = start + timedelta(seconds=n)
            record = {
                "customerId": customer,
                "transactionId": transaction,
                "transactionTime": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "amount": round(5 + (n % 50) * 0.5, 2),
            }
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
            if n == 10:  # no amount
                out.write(
                    '{"customerId":"cust-1","transactionId":"bad-1",'
                    '"transactionTime":"2024-10-16T08:00:00Z"}\n'
                )
                invalid += 1
            elif n == 20:  # a datetime without a zone
                out.write(
                    '{"customerId":"cust-2","transactionId":"bad-2",'
                    '"transactionTime":"2024-10-16T08:00:00","amount":5}\n'
                )
                invalid += 1
    return failing, invalid


async def demo(
    *,
    records: int,
    jobs: int,
    job_seconds: float,
    directory: Path | None,
    poll: PollPolicy,
    ui: RunInterface,
    interrupt: anyio.Event,
) -> int:
    """Run the demo; return 0 when it ran as planned (per-item failures included).

    :param records: valid cashback records to send.
    :param jobs: jobs to spread them over (at most 1,000 records each).
    :param job_seconds: how long the fake takes to process one job.
    :param directory: where the files go (default: a new temporary directory).
    """
    from gameball_async.testing import FakeGameball, Faults  # noqa: PLC0415 - only the demo needs the fake

    chunk = min(MAX_BATCH_ITEMS, math.ceil(records / jobs))
    folder = directory or Path(tempfile.mkdtemp(prefix="gameball-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "cashback.jsonl"
    failing, invalid = await anyio.to_thread.run_sync(write_demo_file, source, records)
    ui.note(
        f"demo: wrote {records:,} cashback records to {source} (plus {invalid:,} invalid lines; "
        f"{failing:,} records are bound to fail: unknown customers and repeated transaction ids)"
    )
    fake = FakeGameball(
        processing_rate=max(chunk / job_seconds, 1.0),
        queue_delay=min(0.5, job_seconds / 4),
        customers_must_exist=True,
        faults=Faults(http_429=0.02, routes=frozenset({"status"})),
        seed=7,
    )
    for n in range(_CUSTOMERS):
        fake.add_customer(f"cust-{n}", 0.0)
    async with fake:
        ui.note(
            f"fake Gameball API on {fake.base_url} (in this process: no credentials, "
            f"no network); {math.ceil(records / chunk):,} jobs of up to {chunk:,} records"
        )

        def make_session(_recorded: str | None) -> GameballSession:
            return GameballSession(
                fake.api_key,
                fake.secret_key,
                base_url=fake.base_url,
                poll=poll,
                max_in_flight_polls=POLLS_IN_FLIGHT,
            )

        options = SubmitOptions(
            operation=Operation.CASHBACK,
            input=str(source),
            skip_invalid=True,
            chunk_size=chunk,
            force=True,
        )
        code = await submit(options, make_session, ui, interrupt)
        counts = fake.counts
        ui.note(
            f"the fake saw {counts['create']:,} creations, {counts['status']:,} status polls "
            f"and sent {counts['fault:429'] + counts['rate_limited']:,} 429s (retried by the SDK)"
        )
    ui.note(f"the input, results, manifest and rejects files are in {folder}")
    if code == EXIT_FAILED:
        ui.note(
            "the per-item failures above are planned (unknown customers, repeated "
            "transaction ids), so the demo itself exits 0; a real `submit` exits 1 here"
        )
    # Per-item failures are part of the show: the run is a success when they are all that failed.
    return EXIT_OK if code in (EXIT_OK, EXIT_FAILED) else code
