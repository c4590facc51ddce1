"""``gameball-batch`` end to end against FakeGameball (``cli.run`` in the test's loop)."""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from _support import FakeFactory

from gameball_async import BatchState, BatchStatus, GameballSession, ItemResult
from gameball_async.cli import build_parser, main, run
from gameball_async.cli._results import item_outcomes
from gameball_async.testing import FakeGameball, InjectedReply

API_KEY = "ak-live-7f3a91c2"
SECRET_KEY = "sk-live-d00dfeed4242"
WHEN = "2024-10-16T08:13:29.290Z"

pytestmark = pytest.mark.anyio


# every fake here: the keys the command is given, jobs queued a moment
CLI_FAKE: Final[dict[str, Any]] = {
    "api_key": API_KEY,
    "secret_key": SECRET_KEY,
    "queue_delay": 0.01,
}


@pytest.fixture
async def fake(fake_factory: FakeFactory) -> FakeGameball:
    return await fake_factory(**CLI_FAKE, processing_rate=100_000)


def env(fake: FakeGameball) -> dict[str, str]:
    return {"GAMEBALL_API_KEY": fake.api_key, "GAMEBALL_SECRET_KEY": fake.secret_key}


async def cli(fake: FakeGameball, *args: str, **kwargs: Any) -> int:
    """Run the command against the fake, plain output, fast polling."""
    argv = ["--base-url", fake.base_url, "--no-live", "--poll-interval", "0.02", *args]
    return await run(argv, env=env(fake), **kwargs)


@contextmanager
def served_fake(*options: str) -> Iterator[str]:
    """A fake in a process of its own (``python -m gameball_async.testing serve``),
    with this file's keys and no rate limit: its base URL."""
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gameball_async.testing",
            "serve",
            "--no-rate-limit",
            *options,
            "--api-key",
            API_KEY,
            "--secret-key",
            SECRET_KEY,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        yield json.loads(fake.stdout.readline())["base_url"]
    finally:
        fake.terminate()
        fake.communicate(timeout=10)  # also closes its stdout pipe


def command_line(base_url: str, *args: str) -> list[str]:
    """``gameball-batch`` as a child process's command line, on ``base_url``, polling fast."""
    return [
        sys.executable,
        "-m",
        "gameball_async",
        "--base-url",
        base_url,
        "--poll-interval",
        "0.05",
        *args,
    ]


def start_submit(base_url: str, source: Path, *, concurrency: int) -> subprocess.Popen[str]:
    """``submit cashback`` of ``source`` in chunks of 4, in a child process (output piped)."""
    return subprocess.Popen(
        command_line(
            base_url,
            "submit",
            "cashback",
            str(source),
            "--chunk-size",
            "4",
            "--concurrency",
            str(concurrency),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_environment(),
    )


def child_environment() -> dict[str, str]:
    """The environment of a ``gameball-batch`` child process: the keys, unbuffered output."""
    return {
        **os.environ,
        "GAMEBALL_API_KEY": API_KEY,
        "GAMEBALL_SECRET_KEY": SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
    }


def write_jsonl(path: Path, records: Sequence[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def cashback(n: int, **changes: Any) -> dict[str, Any]:
    record = {
        "customerId": f"c{n % 7}",
        "transactionId": f"tx-{n}",
        "transactionTime": WHEN,
        "amount": 10 + n,
    }
    record.update(changes)
    return record


RECORDS: dict[str, Any] = {
    "customers": lambda n: {
        "customerId": f"c{n}",
        "email": f"c{n}@example.com",
        "guest": False,
        "customerAttributes": {"firstName": "Ada", "channel": "web"},
    },
    "orders": lambda n: {
        "customerId": f"c{n}",
        "orderId": f"o-{n}",
        "orderDate": WHEN,
        "totalPaid": 12.5,
        "lineItems": [{"sku": "x"}],
    },
    "order-transactions": lambda n: f"o-{n}",
    "balance-inquiry": lambda n: {"customerId": f"c{n}"},
    "balance-adjustment": lambda n: {"customerId": f"c{n}", "amount": 5, "reason": "goodwill"},
    "cashback": cashback,
    "redeem": lambda n: {
        "customerId": f"c{n}",
        "transactionId": f"r-{n}",
        "transactionTime": WHEN,
        "points": 3,
    },
    "events": lambda n: {"customerId": f"c{n}", "events": {"purchase": {"amount": n}}},
}


def check_results(results: Path, lines: Sequence[int]) -> list[dict[str, Any]]:
    """Every input line has exactly one outcome; return the rows by line."""
    rows = read_jsonl(results)
    counts = collections.Counter(row["line"] for row in rows)
    assert sorted(counts) == sorted(lines)
    assert set(counts.values()) == {1}, [line for line, n in counts.items() if n > 1]
    return sorted(rows, key=lambda row: row["line"])


def as_multiset(items: Sequence[Any]) -> collections.Counter[str]:
    return collections.Counter(json.dumps(item, sort_keys=True) for item in items)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def files_text(folder: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in folder.iterdir())


def sent_items(fake: FakeGameball) -> list[Any]:
    return [item for _, job in sorted(fake.jobs.items()) for item in job.items]


class TestSubmit:
    @pytest.mark.parametrize("operation", list(RECORDS))
    async def test_every_operation_jsonl(
        self, fake: FakeGameball, tmp_path: Path, operation: str
    ) -> None:
        records = [RECORDS[operation](n) for n in range(23)]
        source = write_jsonl(tmp_path / "in.jsonl", records)
        code = await cli(fake, "submit", operation, str(source), "--chunk-size", "10")
        assert code == 0
        # each job holds exactly the records of the lines the manifest gives it, in order,
        # extra fields passed through
        for entry in read_jsonl(tmp_path / "in.jsonl.manifest.jsonl"):
            if entry["type"] == "job":
                lines = [n for a, b in entry["lines"] for n in range(a, b + 1)]
                assert list(fake.jobs[int(entry["job_id"])].items) == [
                    records[n - 1] for n in lines
                ]
        assert as_multiset(sent_items(fake)) == as_multiset(records)
        assert fake.counts["create"] == 3
        rows = check_results(tmp_path / "in.jsonl.results.jsonl", range(1, 24))
        assert {row["outcome"] for row in rows} == {"succeeded"}
        manifest = read_jsonl(tmp_path / "in.jsonl.manifest.jsonl")
        assert manifest[0]["type"] == "header"
        assert manifest[0]["operation"] == operation
        jobs = {e["job_id"]: e for e in manifest if e["type"] == "job"}
        assert [e["lines"] for e in jobs.values()] == [[[1, 10]], [[11, 20]], [[21, 23]]]
        assert {e["job_id"] for e in manifest if e["type"] == "done"} == set(jobs)
        assert manifest[-1]["type"] == "submitted"
        assert {row["job_id"] for row in rows} == set(jobs)

    async def test_cashback_csv_converts_by_schema(
        self, fake: FakeGameball, tmp_path: Path
    ) -> None:
        source = tmp_path / "cash.csv"
        source.write_text(
            "customerId,transactionId,transactionTime,amount,email,note\n"
            f"c1,t1,{WHEN},10,,first\n"
            f'c2,t2,{WHEN},12.75,a@b.c,"multi\nline"\n'
            f"c3,t3,{WHEN},3,,\n",
            encoding="utf-8",
        )
        assert await cli(fake, "submit", "cashback", str(source)) == 0
        assert sent_items(fake) == [
            {
                "customerId": "c1",
                "transactionId": "t1",
                "transactionTime": WHEN,
                "amount": 10,
                "note": "first",
            },
            {
                "customerId": "c2",
                "transactionId": "t2",
                "transactionTime": WHEN,
                "amount": 12.75,
                "email": "a@b.c",
                "note": "multi\nline",
            },
            {"customerId": "c3", "transactionId": "t3", "transactionTime": WHEN, "amount": 3},
        ]
        # lines are physical lines: the quoted newline pushes the third record to line 5
        check_results(tmp_path / "cash.csv.results.jsonl", [2, 3, 5])

    async def test_customers_csv_builds_nested_objects(
        self, fake: FakeGameball, tmp_path: Path
    ) -> None:
        source = tmp_path / "people.csv"
        with source.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(
                [
                    "customerId",
                    "guest",
                    "customerAttributes.firstName",
                    "customerAttributes.totalOrders",
                    "customerAttributes.utms",
                    "customerAttributes.custom",
                ]
            )
            writer.writerow(["c1", "true", "Ada", "3", "a|b", '{"tier": "gold"}'])
            writer.writerow(["c2", "no", "", "", "", ""])
        assert await cli(fake, "submit", "customers", str(source)) == 0
        assert sent_items(fake) == [
            {
                "customerId": "c1",
                "guest": True,
                "customerAttributes": {
                    "firstName": "Ada",
                    "totalOrders": 3,
                    "utms": ["a", "b"],
                    "custom": {"tier": "gold"},
                },
            },
            {"customerId": "c2", "guest": False},
        ]

    async def test_order_transactions_csv(self, fake: FakeGameball, tmp_path: Path) -> None:
        source = tmp_path / "orders.csv"
        source.write_text("orderId,comment\nO-1,x\nO-2,\n", encoding="utf-8")
        assert await cli(fake, "submit", "order-transactions", str(source)) == 0
        assert sent_items(fake) == ["O-1", "O-2"]

    async def test_excel_csv_with_bom_and_crlf(self, fake: FakeGameball, tmp_path: Path) -> None:
        source = tmp_path / "export.csv"
        text = "customerId,amount,reason\r\nc1,-2.5,fix\r\nc2,7,\r\n"
        source.write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert await cli(fake, "submit", "balance-adjustment", str(source)) == 0
        assert sent_items(fake) == [
            {"customerId": "c1", "amount": -2.5, "reason": "fix"},
            {"customerId": "c2", "amount": 7},
        ]

    @pytest.mark.parametrize("shape", ["openapi", "mixed"])
    async def test_other_status_shapes(
        self, fake_factory: FakeFactory, tmp_path: Path, shape: Any
    ) -> None:
        records = [cashback(n) for n in range(8)]
        records[5]["transactionId"] = "tx-1"
        source = write_jsonl(tmp_path / "in.jsonl", records)
        server = await fake_factory(**CLI_FAKE, status_shape=shape)
        assert await cli(server, "submit", "cashback", str(source), "--chunk-size", "3") == 1
        rows = check_results(tmp_path / "in.jsonl.results.jsonl", range(1, 9))
        assert [row["line"] for row in rows if row["outcome"] == "failed"] == [6]

    async def test_stdin(
        self, fake: FakeGameball, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        data = "".join(json.dumps(cashback(n)) + "\n" for n in range(5)).encode()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        monkeypatch.chdir(tmp_path)
        manifest = tmp_path / "run.manifest.jsonl"
        results = tmp_path / "run.results.jsonl"
        code = await cli(
            fake, "submit", "cashback", "-", "--manifest", str(manifest), "--results", str(results)
        )
        assert code == 0
        check_results(results, range(1, 6))
        # the spooled copy is removed once every record is settled
        assert names(tmp_path) == [manifest.name, results.name]

    async def test_partial_failure_exit_1(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        records = [cashback(n) for n in range(12)]
        records[7]["transactionId"] = "tx-2"  # a repeated transaction id: 9004
        records[11]["transactionId"] = "tx-3"
        source = write_jsonl(tmp_path / "in.jsonl", records)
        assert await cli(fake, "submit", "cashback", str(source), "--chunk-size", "5") == 1
        rows = check_results(tmp_path / "in.jsonl.results.jsonl", range(1, 13))
        failed = {row["line"]: row for row in rows if row["outcome"] != "succeeded"}
        assert sorted(failed) == [8, 12]
        assert {row["code"] for row in failed.values()} == {9004}
        assert "Duplicate transaction id" in failed[8]["message"]
        out = capsys.readouterr().out
        assert "exit 1" in out
        assert "9004" in out

    async def test_failed_job_items_not_processed(
        self, fake_factory: FakeFactory, tmp_path: Path
    ) -> None:
        slow = await fake_factory(**CLI_FAKE, processing_rate=40)
        source = write_jsonl(tmp_path / "in.jsonl", [cashback(n) for n in range(20)])

        def fail_first_job(entry: Mapping[str, Any]) -> None:
            if entry["type"] == "job":
                slow.fail_job(int(entry["job_id"]))

        code = await cli(slow, "submit", "cashback", str(source), observer=fail_first_job)
        assert code == 1
        rows = check_results(tmp_path / "in.jsonl.results.jsonl", range(1, 21))
        assert {row["outcome"] for row in rows} <= {"succeeded", "not_processed"}
        assert any(row["outcome"] == "not_processed" for row in rows)

    async def test_notes_count_with_thousands_separators(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        records = [{"customerId": f"c{n}"} for n in range(2500)]
        source = write_jsonl(tmp_path / "in.jsonl", records)
        assert await cli(fake, "submit", "balance-inquiry", str(source)) == 0
        out = capsys.readouterr().out
        # counts carry separators as the tables do; line numbers are positions, not counts
        assert "created: 1,000 records (lines 1001-2000)" in out
        assert "Completed: 1,000 succeeded, 0 failed" in out
        assert "2,500" in out  # the summary table


class TestOutcomes:
    def status(self, state: BatchState, *results: ItemResult, errors: int = 0) -> BatchStatus:
        return BatchStatus(
            job_id="1",
            operation=None,
            state=state,
            state_word=state.value,
            total_count=4,
            error_count=errors,
            succeeded=tuple(r for r in results if r.ok),
            failed=tuple(r for r in results if not r.ok),
        )

    def test_placed_by_index(self) -> None:
        status = self.status(
            BatchState.COMPLETED,
            ItemResult(index=2, ok=False, code=9004, message="dup"),
            *(ItemResult(index=i, ok=True) for i in (3, 1, 0)),
            errors=1,
        )
        assert item_outcomes(status, 4) == [
            ("succeeded", None, None),
            ("succeeded", None, None),
            ("failed", 9004, "dup"),
            ("succeeded", None, None),
        ]

    def test_completed_without_per_item_results(self) -> None:
        assert {o for o, _, _ in item_outcomes(self.status(BatchState.COMPLETED), 4)} == {
            "succeeded"
        }
        # failures were counted but not listed: which ones is unknown
        unknown = item_outcomes(self.status(BatchState.COMPLETED, errors=2), 4)
        assert {o for o, _, _ in unknown} == {"unknown"}

    def test_failed_and_stopped_jobs(self) -> None:
        for state in (BatchState.FAILED, BatchState.STOPPED):
            outcomes = item_outcomes(self.status(state, ItemResult(index=0, ok=True)), 4)
            assert [o for o, _, _ in outcomes] == ["succeeded"] + ["not_processed"] * 3
            assert state.value in str(outcomes[1][2])

    def test_out_of_range_and_duplicate_indexes_ignored(self) -> None:
        status = self.status(
            BatchState.STOPPED,
            ItemResult(index=7, ok=True),
            ItemResult(index=None, ok=True),
            ItemResult(index=1, ok=False, code=1),
            ItemResult(index=1, ok=True),
        )
        assert [o for o, _, _ in item_outcomes(status, 2)] == ["not_processed", "failed"]


class TestBadInput:
    async def bad(self, fake: FakeGameball, path: Path, operation: str = "cashback") -> int:
        code = await cli(fake, "submit", operation, str(path))
        assert fake.counts["requests"] == 0
        assert not (path.parent / (path.name + ".manifest.jsonl")).exists()
        return code

    async def test_malformed_json_line(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        source = tmp_path / "in.jsonl"
        source.write_text(json.dumps(cashback(1)) + '\n{"customerId": "c2",\n', encoding="utf-8")
        assert await self.bad(fake, source) == 3
        err = capsys.readouterr().err
        assert "line 2: malformed JSON" in err
        assert "nothing was sent" in err
        (reject,) = read_jsonl(tmp_path / "in.jsonl.rejects.jsonl")
        assert (reject["line"], reject["field"]) == (2, None)
        assert reject["record"] == '{"customerId": "c2",'

    async def test_missing_field_and_wrong_type(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        records = [cashback(0), cashback(1), cashback(2), cashback(3)]
        del records[1]["amount"]
        records[3]["amount"] = "ten"
        source = write_jsonl(tmp_path / "in.jsonl", records)
        assert await self.bad(fake, source) == 3
        err = capsys.readouterr().err
        assert "line 2: required field 'amount' is missing" in err
        assert "line 4: field 'amount' must be a finite number, got str" in err
        rejects = read_jsonl(tmp_path / "in.jsonl.rejects.jsonl")
        assert [(r["line"], r["field"]) for r in rejects] == [(2, "amount"), (4, "amount")]
        assert rejects[1]["record"] == records[3]

    async def test_snake_case_keys_get_the_camel_case_name(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        record = cashback(1)
        record["customer_id"] = record.pop("customerId")
        source = write_jsonl(tmp_path / "in.jsonl", [cashback(0), record])
        assert await self.bad(fake, source) == 3
        assert (
            "line 2: required field 'customerId' is missing (found 'customer_id': use the "
            "camelCase wire name 'customerId')"
        ) in capsys.readouterr().err
        csv_source = tmp_path / "in.csv"
        csv_source.write_text(
            f"customer_id,transactionId,transaction_time,amount\nc1,t1,{WHEN},1\n",
            encoding="utf-8",
        )
        assert await self.bad(fake, csv_source) == 3
        err = capsys.readouterr().err
        assert "lacks required columns 'customerId', 'transactionTime'" in err
        assert "found 'customer_id': use the camelCase wire name 'customerId'" in err
        assert "found 'transaction_time': use the camelCase wire name 'transactionTime'" in err

    async def test_nan_and_naive_datetime(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        source = tmp_path / "in.jsonl"
        source.write_text(
            json.dumps(cashback(0, transactionTime="2024-10-16T08:13:29"))
            + "\n"
            + json.dumps(cashback(1)).replace("11", "NaN")
            + "\n",
            encoding="utf-8",
        )
        assert await self.bad(fake, source) == 3
        err = capsys.readouterr().err
        assert "line 1: field 'transactionTime' has no time zone" in err
        assert "line 2: malformed JSON" in err

    async def test_empty_file(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        source = tmp_path / "in.jsonl"
        source.write_text("\n  \n", encoding="utf-8")
        assert await self.bad(fake, source) == 3
        assert "no records to send" in capsys.readouterr().err

    async def test_csv_missing_column_reported_once(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        source = tmp_path / "in.csv"
        rows = "".join(f"c{n},t{n},{WHEN}\n" for n in range(50))
        source.write_text("customerId,transactionId,transactionTime\n" + rows, encoding="utf-8")
        assert await self.bad(fake, source) == 3
        err = capsys.readouterr().err
        assert err.count("'amount'") == 1
        assert "lacks required column 'amount'" in err

    async def test_csv_bad_cell(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        source = tmp_path / "in.csv"
        source.write_text(
            f"customerId,transactionId,transactionTime,amount\nc1,t1,{WHEN},1\nc2,t2,{WHEN},x\n",
            encoding="utf-8",
        )
        assert await self.bad(fake, source) == 3
        assert "line 3: field 'amount' must be a number, got 'x'" in capsys.readouterr().err

    async def test_skip_invalid_sends_the_rest(self, fake: FakeGameball, tmp_path: Path) -> None:
        records: list[Any] = [cashback(n) for n in range(8)]
        del records[2]["customerId"]
        source = tmp_path / "in.jsonl"
        text = "".join(json.dumps(r) + "\n" for r in records).replace(
            json.dumps(records[5]), "not json"
        )
        source.write_text(text, encoding="utf-8")
        code = await cli(
            fake,
            "submit",
            "cashback",
            str(source),
            "--skip-invalid",
            "--rejects",
            str(tmp_path / "bad.jsonl"),
        )
        assert code == 1  # rejected records did not succeed
        assert sent_items(fake) == [r for i, r in enumerate(records) if i not in (2, 5)]
        rejects = read_jsonl(tmp_path / "bad.jsonl")
        assert [(r["line"], r["field"]) for r in rejects] == [(3, "customerId"), (6, None)]
        rows = check_results(tmp_path / "in.jsonl.results.jsonl", range(1, 9))
        assert [row["line"] for row in rows if row["outcome"] == "rejected"] == [3, 6]
        jobs = [e for e in read_jsonl(tmp_path / "in.jsonl.manifest.jsonl") if e["type"] == "job"]
        assert jobs[0]["lines"] == [[1, 2], [4, 5], [7, 8]]

    async def test_usage_errors(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert await cli(fake, "submit", "cashback", str(tmp_path / "nope.jsonl")) == 2
        assert await cli(fake, "submit", "cashback", str(tmp_path / "in.txt")) == 2
        assert await cli(fake, "submit", "teleport", "x.jsonl") == 2
        assert await cli(fake, "submit", "cashback", "x.jsonl", "--chunk-size", "1001") == 2
        real = write_jsonl(tmp_path / "real.jsonl", [cashback(1)])
        assert (
            await cli(
                fake,
                "submit",
                "cashback",
                str(real),
                "--results",
                str(tmp_path / "no" / "such" / "dir.jsonl"),
            )
            == 2
        )
        source = write_jsonl(tmp_path / "in.jsonl", [cashback(1)])
        assert await run(["submit", "cashback", str(source)], env={}) == 2
        assert "GAMEBALL_API_KEY" in capsys.readouterr().err
        (tmp_path / "in.jsonl.manifest.jsonl").write_text("{}\n")
        assert await cli(fake, "submit", "cashback", str(source)) == 2
        assert "resume" in capsys.readouterr().err
        assert fake.counts["requests"] == 0


class TestInterruptAndResume:
    async def test_interrupt_then_resume_writes_each_outcome_once(
        self, fake_factory: FakeFactory, tmp_path: Path
    ) -> None:
        records = [cashback(n) for n in range(40)]
        source = write_jsonl(tmp_path / "in.jsonl", records)
        results = tmp_path / "in.jsonl.results.jsonl"
        manifest = tmp_path / "in.jsonl.manifest.jsonl"
        slow = await fake_factory(**CLI_FAKE, processing_rate=20)
        interrupt = anyio.Event()
        jobs_seen = 0

        def on_entry(entry: Mapping[str, Any]) -> None:
            nonlocal jobs_seen
            if entry["type"] == "job":
                jobs_seen += 1
                if jobs_seen == 3:
                    interrupt.set()  # as the first Ctrl-C does

        code = await cli(
            slow,
            "submit",
            "cashback",
            str(source),
            "--chunk-size",
            "4",
            "--concurrency",
            "1",
            interrupt=interrupt,
            observer=on_entry,
        )
        assert code == 130
        entries = read_jsonl(manifest)
        created = [e["job_id"] for e in entries if e["type"] == "job"]
        assert 3 <= len(created) < 10
        done = [e["job_id"] for e in entries if e["type"] == "done"]
        assert len(done) < len(created)  # resume has jobs to reattach to
        assert not any(e["type"] == "submitted" for e in entries)
        # A crash mid-write: lines of a job that has no "done" mark yet.
        with results.open("a") as out:
            out.write(
                json.dumps(
                    {
                        "line": 1,
                        "job_id": created[0],
                        "outcome": "failed",
                        "code": 1,
                        "message": "torn",
                    }
                )
                + "\n"
                + '{"line": 2, "jo'
            )

        assert await cli(slow, "resume", str(manifest)) == 0
        rows = check_results(results, range(1, 41))
        assert {row["outcome"] for row in rows} == {"succeeded"}
        # nothing was sent twice, nothing was lost (resume sends in parallel: any order)
        assert as_multiset(sent_items(slow)) == as_multiset(records)
        assert set(slow.created_bodies.values()) == {1}
        assert read_jsonl(manifest)[-1]["type"] == "submitted"

        # resuming a finished run changes nothing
        assert await cli(slow, "resume", str(manifest)) == 0
        check_results(results, range(1, 41))
        assert as_multiset(sent_items(slow)) == as_multiset(records)

    async def test_hard_cancel_then_resume_never_resends(
        self, fake_factory: FakeFactory, tmp_path: Path
    ) -> None:
        records = [cashback(n) for n in range(30)]
        source = write_jsonl(tmp_path / "in.jsonl", records)
        manifest = tmp_path / "in.jsonl.manifest.jsonl"
        slow = await fake_factory(**CLI_FAKE, processing_rate=50)
        async with anyio.create_task_group() as tg:

            def on_entry(entry: Mapping[str, Any]) -> None:
                if entry["type"] == "job" and entry["chunk"] == 2:
                    tg.cancel_scope.cancel()  # as a second Ctrl-C (or a kill) does

            tg.start_soon(
                lambda: cli(
                    slow,
                    "submit",
                    "cashback",
                    str(source),
                    "--chunk-size",
                    "3",
                    "--concurrency",
                    "3",
                    observer=on_entry,
                )
            )
        code = await cli(slow, "resume", str(manifest))
        rows = check_results(tmp_path / "in.jsonl.results.jsonl", range(1, 31))
        outcomes = collections.Counter(row["outcome"] for row in rows)
        # chunks in flight when cancelled may exist remotely: "unknown", never resent
        assert set(outcomes) <= {"succeeded", "unknown"}
        assert code == (4 if outcomes["unknown"] else 0)
        assert set(slow.created_bodies.values()) == {1}
        sent = sent_items(slow)
        assert len(sent) == len({json.dumps(item) for item in sent})
        unknown = [row["line"] for row in rows if row["outcome"] == "unknown"]
        assert len(sent) + len(unknown) >= len(records)

    async def test_auth_failure_releases_records_for_resume(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [cashback(n) for n in range(6)])
        argv = [
            "--base-url",
            fake.base_url,
            "--no-live",
            "--poll-interval",
            "0.02",
            "--api-key",
            API_KEY,
            "--secret-key",
            "sk-wrong-0000",
        ]
        code = await run([*argv, "submit", "cashback", str(source), "--chunk-size", "2"], env={})
        assert code == 4
        assert fake.counts["jobs_created"] == 0
        captured = capsys.readouterr()
        assert "resume" in captured.err
        assert "HTTP 401" in captured.err
        assert await cli(fake, "resume", str(tmp_path / "in.jsonl.manifest.jsonl")) == 0
        check_results(tmp_path / "in.jsonl.results.jsonl", range(1, 7))
        assert fake.counts["jobs_created"] == 3

    async def test_ambiguous_creation_is_not_resent(
        self, fake: FakeGameball, tmp_path: Path
    ) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [cashback(n) for n in range(6)])
        fake.inject("create", InjectedReply(action="drop_after"))
        code = await cli(
            fake, "submit", "cashback", str(source), "--chunk-size", "2", "--concurrency", "1"
        )
        assert code == 4
        rows = check_results(tmp_path / "in.jsonl.results.jsonl", range(1, 7))
        assert [row["outcome"] for row in rows] == ["unknown"] * 2 + ["succeeded"] * 4
        assert fake.counts["jobs_created"] == 3  # the dropped one exists, and was not resent
        assert await cli(fake, "resume", str(tmp_path / "in.jsonl.manifest.jsonl")) == 4
        assert fake.counts["jobs_created"] == 3

    async def test_stop_on_interrupt_stops_remote_jobs(
        self, fake_factory: FakeFactory, tmp_path: Path
    ) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [cashback(n) for n in range(20)])
        slow = await fake_factory(**CLI_FAKE, processing_rate=5)
        interrupt = anyio.Event()

        def on_entry(entry: Mapping[str, Any]) -> None:
            if entry["type"] == "job":
                interrupt.set()

        code = await cli(
            slow,
            "submit",
            "cashback",
            str(source),
            "--chunk-size",
            "10",
            "--concurrency",
            "1",
            "--stop-on-interrupt",
            interrupt=interrupt,
            observer=on_entry,
        )
        assert code == 130
        assert {slow.job_state(job_id) for job_id in slow.jobs} == {"Stopped"}
        assert await cli(slow, "resume", str(tmp_path / "in.jsonl.manifest.jsonl")) == 1
        rows = check_results(tmp_path / "in.jsonl.results.jsonl", range(1, 21))
        outcomes = collections.Counter(row["outcome"] for row in rows)
        assert outcomes["not_processed"] > 0
        assert set(outcomes) <= {"succeeded", "not_processed"}

    async def test_resume_collects_everything_again_when_results_are_lost(
        self, fake: FakeGameball, tmp_path: Path
    ) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [cashback(n) for n in range(9)])
        assert await cli(fake, "submit", "cashback", str(source), "--chunk-size", "4") == 0
        results = tmp_path / "in.jsonl.results.jsonl"
        results.unlink()
        assert await cli(fake, "resume", str(tmp_path / "in.jsonl.manifest.jsonl")) == 0
        check_results(results, range(1, 10))
        assert fake.counts["jobs_created"] == 3

    def test_ctrl_c_then_resume(self, tmp_path: Path) -> None:
        """A real SIGINT through main(): exit 130, then `resume` finishes the run."""
        source = write_jsonl(tmp_path / "in.jsonl", [cashback(n) for n in range(40)])
        with served_fake("--processing-rate", "20") as base_url:
            child = start_submit(base_url, source, concurrency=1)
            assert child.stdout is not None
            created = 0
            for line in child.stdout:  # wait for a condition: two jobs created
                created += " created: " in line
                if created == 2:
                    child.send_signal(signal.SIGINT)
                    break
            _, err = child.communicate(timeout=60)
            assert child.returncode == 130, err
            assert "interrupted" in err
            resumed = subprocess.run(
                command_line(base_url, "resume", str(tmp_path / "in.jsonl.manifest.jsonl")),
                env=child_environment(),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert resumed.returncode == 0, resumed.stderr
            rows = check_results(tmp_path / "in.jsonl.results.jsonl", range(1, 41))
            assert {row["outcome"] for row in rows} == {"succeeded"}


class TestAbort:
    """A second Ctrl-C cancels the run at once: it says how to finish it."""

    async def test_abort_names_the_resume_command_absolute(
        self,
        fake_factory: FakeFactory,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        write_jsonl(tmp_path / "in.jsonl", [cashback(n) for n in range(30)])
        monkeypatch.chdir(tmp_path)  # the input is named relative to the working directory
        slow = await fake_factory(**CLI_FAKE, processing_rate=50)
        with anyio.CancelScope() as scope:

            def on_entry(entry: Mapping[str, Any]) -> None:
                if entry["type"] == "job":
                    scope.cancel()  # as the second Ctrl-C does

            await cli(
                slow, "submit", "cashback", "in.jsonl", "--chunk-size", "3", observer=on_entry
            )
        assert scope.cancelled_caught
        manifest = tmp_path / "in.jsonl.manifest.jsonl"
        assert f"aborted: finish the run with `gameball-batch resume {manifest}`" in (
            capsys.readouterr().err
        )

    async def test_abort_without_a_run_to_resume_says_aborted(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await cli(fake, "status", "1")
        err = capsys.readouterr().err
        assert "aborted" in err
        assert "resume" not in err

    async def test_resume_shows_the_manifest_absolute(
        self,
        fake_factory: FakeFactory,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        write_jsonl(tmp_path / "in.jsonl", [cashback(n) for n in range(40)])
        monkeypatch.chdir(tmp_path)
        manifest = tmp_path / "in.jsonl.manifest.jsonl"
        slow = await fake_factory(**CLI_FAKE, processing_rate=20)
        submit = ["submit", "cashback", "in.jsonl", "--chunk-size", "4"]
        for command in (submit, ["resume", manifest.name]):
            interrupt = anyio.Event()

            def on_entry(entry: Mapping[str, Any], interrupt: anyio.Event = interrupt) -> None:
                if entry["type"] == "job":
                    interrupt.set()  # as the first Ctrl-C does

            code = await cli(
                slow, *command, "--concurrency", "1", interrupt=interrupt, observer=on_entry
            )
            assert code == 130
            captured = capsys.readouterr()
            assert f" manifest: {manifest}\n" in captured.out, command
            assert f"run `gameball-batch resume {manifest}`" in captured.err, command

    def test_second_ctrl_c_aborts_and_names_the_resume_command(self, tmp_path: Path) -> None:
        """Two real SIGINTs through main(): the second one aborts, once, with the hint."""
        # Every reply takes seconds: the first Ctrl-C leaves creations in flight.
        source = write_jsonl(tmp_path / "in.jsonl", [cashback(n) for n in range(40)])
        with served_fake("--latency", "4", "4") as base_url:
            child = start_submit(base_url, source, concurrency=2)
            assert child.stdout is not None
            assert child.stderr is not None
            for line in child.stdout:  # wait for a condition: a job created
                if " created: " in line:
                    child.send_signal(signal.SIGINT)
                    break
            for line in child.stderr:  # the first Ctrl-C was taken: now the second
                if "interrupted: no more chunks" in line:
                    child.send_signal(signal.SIGINT)
                    break
            _, err = child.communicate(timeout=60)
            assert child.returncode == 130, err
            manifest = tmp_path / "in.jsonl.manifest.jsonl"
            assert err.count("aborted") == 1, err
            assert f"`gameball-batch resume {manifest}`" in err


class TestJobCommands:
    async def make_jobs(self, fake: FakeGameball, count: int) -> list[str]:
        async with GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url) as gb:
            jobs = [
                await gb.create_batch("balance-inquiry", [{"customerId": f"c{n}"}])
                for n in range(count)
            ]
        return [job.job_id for job in jobs]

    async def test_status_json_and_table(
        self, fake: FakeGameball, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = await self.make_jobs(fake, 2)
        assert await cli(fake, "status", *ids, "--json") == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [line["job_id"] for line in lines] == ids
        assert await cli(fake, "status", ids[0]) == 0
        assert ids[0] in capsys.readouterr().out
        assert await cli(fake, "status", ids[0], "999999") == 1
        assert "999999" in capsys.readouterr().err
        assert await cli(fake, "status", "../etc") == 2

    async def test_stop_and_watch(
        self, fake_factory: FakeFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        slow = await fake_factory(**CLI_FAKE, processing_rate=1)
        async with GameballSession(API_KEY, SECRET_KEY, base_url=slow.base_url) as gb:
            job = await gb.create_batch(
                "balance-inquiry", [{"customerId": f"c{n}"} for n in range(50)]
            )
        assert await cli(slow, "stop", job.job_id) == 0
        assert slow.job_state(int(job.job_id)) == "Stopped"
        assert await cli(slow, "watch", job.job_id) == 1  # ended Stopped
        out = capsys.readouterr().out
        assert f"job {job.job_id}: stopped\n" in out
        assert "Stopped" in out
        quick = await fake_factory(**CLI_FAKE, processing_rate=500)
        ids = await self.make_jobs(quick, 2)
        assert await cli(quick, "watch", *ids) == 0
        assert "Completed" in capsys.readouterr().out
        # a job that already ended is not "stop requested": it says so, and exits 0
        assert await cli(quick, "stop", ids[0]) == 0
        assert capsys.readouterr().out == (
            f"job {ids[0]}: already finished (Completed), nothing to stop\n"
        )
        assert quick.job_state(int(ids[0])) == "Completed"


class TestCommandLine:
    async def test_demo_small(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        argv = [
            "--no-live",
            "--poll-interval",
            "0.02",
            "demo",
            "--records",
            "400",
            "--jobs",
            "2",
            "--job-seconds",
            "0.05",
            "--dir",
            str(tmp_path),
        ]
        assert await run(argv, env={}) == 0
        out = capsys.readouterr().out
        for expected in ("exit 1", "7000", "9004"):
            assert expected in out
        rows = check_results(tmp_path / "cashback.jsonl.results.jsonl", range(1, 403))
        assert collections.Counter(r["outcome"] for r in rows)["rejected"] == 2
        assert (tmp_path / "cashback.jsonl.rejects.jsonl").exists()

    async def test_secrets_never_printed(
        self, fake: FakeGameball, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        source = write_jsonl(tmp_path / "in.jsonl", [cashback(n) for n in range(3)])
        flags = [
            "--api-key",
            API_KEY,
            "--secret-key",
            SECRET_KEY,
            "--base-url",
            fake.base_url,
            "--no-live",
            "--poll-interval",
            "0.02",
        ]
        assert await run([*flags, "submit", "cashback", str(source)], env={}) == 0
        assert await run([*flags, "status", "1"], env={}) == 1
        assert await run([*flags, "submit", "cashback", str(source)], env={}) == 2
        assert (
            await run(
                [
                    "--secret-key",
                    SECRET_KEY,
                    "--api-key",
                    API_KEY,
                    "--base-url",
                    "http://example.com",
                    "status",
                    "1",
                ],
                env={},
            )
            == 2
        )
        captured = capsys.readouterr()
        for secret in (API_KEY, SECRET_KEY):
            assert secret not in captured.out + captured.err
            assert secret not in files_text(tmp_path)

    async def test_without_rich(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setitem(sys.modules, "rich", None)
        assert await run(["status", "1"], env={}) == 2
        assert "gameball_async[cli]" in capsys.readouterr().err

    def test_help_documents_exit_codes(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["--help"]) == 0
        out = capsys.readouterr().out
        for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130"):
            assert f"\n  {code}" in out
        assert "--poll-interval" not in out
        assert build_parser().parse_args(["submit", "cashback", "f.csv", "--no-live"]).no_live

    def test_module_entry_point_and_lazy_rich(self, tmp_path: Path) -> None:
        code = "import sys, gameball_async, gameball_async.cli; print('rich' in sys.modules)"
        probe = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert probe.stdout.strip() == "False"
        demo = subprocess.run(
            [
                sys.executable,
                "-m",
                "gameball_async",
                "--poll-interval",
                "0.02",
                "demo",
                "--records",
                "200",
                "--jobs",
                "2",
                "--job-seconds",
                "0.05",
                "--dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert demo.returncode == 0, demo.stderr
        assert "summary" in demo.stdout
