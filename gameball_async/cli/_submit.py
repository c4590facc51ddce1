"""``gameball-batch submit`` and ``resume``: the two passes, the files, the exit code.

``submit`` reads its input twice and never holds it: the first pass validates
every record (and hashes the file, so ``resume`` can tell it is unchanged);
only when that pass is clean (or ``--skip-invalid``) does the second pass read
chunks and hand them to the :class:`~gameball_async.cli._runner.Runner`.
"""

from __future__ import annotations

import sys
from contextlib import closing, nullcontext
from datetime import datetime, timezone
from pathlib import Path

import anyio
import attrs

from gameball_async import GameballSession, Operation

from ._exit import EXIT_INTERRUPTED, EXIT_INVALID
from ._input import (
    InputError,
    Interrupted,
    Reject,
    Scan,
    chunk_records,
    detect_format,
    read_records,
    scan_input,
)
from ._input import spool as spool_stream
from ._jsonl import LazyJsonl, read_jsonl
from ._lines import Coverage
from ._manifest import ManifestError, ManifestState, ManifestWriter
from ._options import Observer, ResumeOptions, SessionFactory, SubmitOptions, UsageError
from ._results import (
    ResultsWriter,
    conclude,
    prune_results,
    reject_from_json,
    write_rejected,
)
from ._runner import Runner
from ._track import UNKNOWN, RunInterface, Tracker

__all__ = ["resume", "submit"]


def _exists(path: Path) -> bool:
    # Local file metadata: cheap, so done inline like the rest of the file I/O here.
    return path.exists()


def _default(base: Path, suffix: str) -> Path:
    return base.with_name(base.name + suffix)


@attrs.frozen
class _Files:
    """Where a submit run reads and writes, resolved and checked up front."""

    fmt: str
    source: Path
    results: Path
    manifest: Path
    rejects: Path
    spooled: bool

    @classmethod
    def plan(cls, options: SubmitOptions) -> _Files:
        try:
            fmt = detect_format(options.input, options.format)
        except InputError as exc:
            raise UsageError(str(exc)) from None
        if options.input == "-":
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            base = Path.cwd() / f"stdin-{stamp}.{fmt}"
        else:
            base = Path(options.input)
            if not base.is_file():
                raise UsageError(f"no such file: {options.input}")
        results = (options.results or _default(base, ".results.jsonl")).resolve()
        manifest = (options.manifest or _default(base, ".manifest.jsonl")).resolve()
        rejects = (options.rejects or _default(base, ".rejects.jsonl")).resolve()
        for path in (manifest, results, rejects):
            if not path.parent.is_dir():
                raise UsageError(f"cannot write {path}: no such directory")
        for path in (manifest, results):
            if not options.force and path.exists() and path.stat().st_size > 0:
                raise UsageError(
                    f"{path} already exists (an earlier run?): finish it with "
                    f"`gameball-batch resume {manifest}`, or pass --force to start over"
                )
        # stdin cannot be read twice: it is copied next to the manifest (resume reads it too)
        source = _default(manifest, f".input.{fmt}") if options.input == "-" else base.resolve()
        return cls(fmt, source, results, manifest, rejects, spooled=options.input == "-")

    def drop_spool(self, *, unless_manifest: bool) -> None:
        """Remove the copy of stdin (when nothing needs it any more)."""
        if self.spooled and not (unless_manifest and self.manifest.exists()):
            self.source.unlink(missing_ok=True)


async def submit(
    options: SubmitOptions,
    make_session: SessionFactory,
    ui: RunInterface,
    interrupt: anyio.Event,
    observer: Observer | None = None,
) -> int:
    """Run ``submit``; return the exit code.

    :raises UsageError: for a missing file, existing run files, bad credentials.
    """
    files = _Files.plan(options)
    gb = make_session(None)
    try:
        async with gb:
            return await _submit(options, gb, ui, interrupt, observer=observer, files=files)
    finally:
        files.drop_spool(unless_manifest=True)  # no manifest: nothing to resume


async def _submit(
    options: SubmitOptions,
    gb: GameballSession,
    ui: RunInterface,
    interrupt: anyio.Event,
    *,
    observer: Observer | None,
    files: _Files,
) -> int:
    op = options.operation
    from_stdin = files.spooled
    fmt, source, results, manifest, rejects = (
        files.fmt,
        files.source,
        files.results,
        files.manifest,
        files.rejects,
    )
    tracker = Tracker(operation=op.value)
    runner: Runner | None = None
    with ui.live(tracker):
        if from_stdin:
            # stdin cannot be read twice: keep a copy next to the manifest,
            # which resume can read too.
            await anyio.to_thread.run_sync(
                spool_stream, sys.stdin.buffer, source, abandon_on_cancel=True
            )
        shown: list[Reject] = []
        rejected_lines: set[int] = set()
        with LazyJsonl(rejects) as rejects_file:

            def on_reject(reject: Reject) -> None:
                rejects_file.write(reject.to_json())
                rejected_lines.add(reject.line)
                if len(shown) < options.max_errors:
                    shown.append(reject)

            try:
                scan = await scan_input(
                    source, fmt, op, tracker=tracker, interrupt=interrupt, on_reject=on_reject
                )
            except Interrupted:
                ui.error("interrupted while validating: nothing was sent")
                return EXIT_INTERRUPTED
            except InputError as exc:
                ui.error(f"invalid input: {exc}; nothing was sent")
                return EXIT_INVALID
        if scan.rejected and not options.skip_invalid:
            for reject in shown:
                ui.error(str(reject))
            more = scan.rejected - len(shown)
            ui.error(
                (f"... and {more:,} more; " if more else "")
                + f"{scan.rejected:,} invalid records, nothing was sent. All are listed in "
                f"{rejects}; fix them, or pass --skip-invalid to send the valid ones"
            )
            return EXIT_INVALID
        if scan.records == 0:
            ui.error(f"{options.input}: no records to send; nothing was sent")
            return EXIT_INVALID
        tracker.records = scan.records
        writer = ManifestWriter(manifest, fresh=True, observer=observer)
        out = ResultsWriter(results, fresh=True)
        try:
            writer.header(
                operation=op.value,
                input=str(source),
                format=fmt,
                input_sha256=scan.sha256,
                spooled=from_stdin,
                records=scan.records,
                rejected=scan.rejected,
                results=str(results),
                rejects=str(rejects) if scan.rejected else None,
                base_url=gb.base_url,
                chunk_size=options.chunk_size,
                created_at=datetime.now(timezone.utc).isoformat(),
            )
            ui.resumable(manifest)
            if scan.rejected:
                write_rejected(
                    (reject_from_json(row) for row in read_jsonl(rejects)), out, writer, tracker
                )
            runner = Runner(
                gb,
                op,
                manifest=writer,
                results=out,
                tracker=tracker,
                ui=ui,
                interrupt=interrupt,
                concurrency=options.concurrency,
                max_pending=options.max_pending,
                stop_on_interrupt=options.stop_on_interrupt,
            )
            # Parse only: pass 1 validated, and create_batch checks each chunk again.
            records = read_records(source, fmt, op, validate=False)
            skip = rejected_lines.__contains__
            chunks = chunk_records(records, options.chunk_size, skip=skip)
            with closing(chunks):  # closes the input file at once if the run stops early
                await runner.execute(chunks, [])
            if runner.outcome.all_sent:
                writer.write({"type": "submitted"})
                files.drop_spool(unless_manifest=False)  # every record is in a job
        finally:
            writer.close()
            out.close()
    written = [("results", str(results)), ("manifest", str(manifest))]
    if scan.rejected:
        written.append(("rejects", f"{rejects} ({scan.rejected:,} records)"))
    return conclude(
        ui,
        f"submit {op.value}",
        None if runner is None else runner.outcome,
        tracker,
        expected=scan.records + scan.rejected,
        results=results,
        manifest=manifest,
        files=written,
    )


async def resume(
    options: ResumeOptions,
    make_session: SessionFactory,
    ui: RunInterface,
    interrupt: anyio.Event,
    observer: Observer | None = None,
) -> int:
    """Run ``resume``; return the exit code.

    :raises UsageError: for a missing or malformed manifest, or bad credentials.
    """
    # Shown absolute, as submit shows it: the resume command works from anywhere.
    manifest = options.manifest.resolve()
    try:
        state = ManifestState.read(manifest)
        header = state.header
        op = Operation(header["operation"])
        results = Path(header["results"])
        records, rejected = int(header["records"]), int(header["rejected"])
        chunk_size, fmt = int(header["chunk_size"]), str(header["format"])
    except (ManifestError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot resume from {manifest}: {exc}") from None
    gb = make_session(header.get("base_url"))
    tracker = Tracker(operation=op.value, phase="resuming")
    if not _exists(results):
        # Every job still has its results on the server: collect them all again.
        state.forget_results()
        ui.error(f"{results} is missing: collecting the outcomes of every job again")
    dropped = prune_results(results, state)
    if dropped:
        ui.note(f"dropped {dropped:,} results lines of unsettled jobs; they are written again")
    ui.resumable(manifest)
    source = options.input.resolve() if options.input is not None else Path(header["input"])
    runner: Runner | None = None
    async with gb:
        with ui.live(tracker):
            writer = ManifestWriter(manifest, fresh=False, observer=observer)
            out = ResultsWriter(results, fresh=False)
            try:
                runner = Runner(
                    gb,
                    op,
                    manifest=writer,
                    results=out,
                    tracker=tracker,
                    ui=ui,
                    interrupt=interrupt,
                    concurrency=options.concurrency,
                    max_pending=options.max_pending,
                    stop_on_interrupt=options.stop_on_interrupt,
                    next_chunk=state.next_chunk,
                )
                for chunk in state.in_doubt():
                    runner.settle(
                        chunk.chunk,
                        chunk.lines,
                        UNKNOWN,
                        "the run stopped while this chunk was being sent",
                        ambiguous=True,
                    )
                remaining = 0 if state.submitted else records - sum(r.count for r in state.sent())
                need_rejects = rejected > 0 and not state.rejected_written
                chunks = None
                if remaining > 0 or need_rejects:
                    rejects: list[Reject] = []
                    try:
                        scan = await scan_input(
                            source,
                            fmt,
                            op,
                            tracker=tracker,
                            interrupt=interrupt,
                            # keep where and why, not the (maybe large) record
                            on_reject=lambda r: rejects.append(attrs.evolve(r, record=None)),
                        )
                    except Interrupted:
                        ui.error("interrupted while reading the input again")
                        return EXIT_INTERRUPTED
                    except InputError as exc:
                        scan = Scan()
                        ui.error(str(exc))
                    if scan.sha256 != header.get("input_sha256"):
                        ui.error(
                            f"{source} is missing or changed since the run started: the "
                            f"{max(remaining, 0):,} records never sent are not sent now (pass "
                            "--input with the original file)"
                        )
                    else:
                        if need_rejects:
                            write_rejected(rejects, out, writer, tracker)
                        tracker.records = remaining
                        sent = Coverage(state.sent())
                        skipped = {reject.line for reject in rejects}
                        chunks = chunk_records(
                            read_records(source, fmt, op, validate=False),
                            chunk_size,
                            skip=lambda line: line in skipped or line in sent,
                        )
                reattach = []
                for chunk in state.pending_jobs():
                    assert chunk.job_id is not None
                    reattach.append((gb.job(chunk.job_id, op), chunk.lines))
                    tracker.job_created(
                        chunk.job_id, chunk.lines.first, chunk.lines.last, chunk.lines.count
                    )
                ui.note(
                    f"resuming: {len(reattach):,} unfinished jobs"
                    + (f", {remaining:,} records still to send" if chunks is not None else "")
                )
                with closing(chunks) if chunks is not None else nullcontext():
                    await runner.execute(chunks, reattach)
                settled = remaining <= 0 or (chunks is not None and runner.outcome.all_sent)
                if not state.submitted and settled:
                    writer.write({"type": "submitted"})
            finally:
                writer.close()
                out.close()
    files = [("results", str(results)), ("manifest", str(manifest))]
    return conclude(
        ui,
        "resume",
        None if runner is None else runner.outcome,
        tracker,
        expected=records + rejected,
        results=results,
        manifest=manifest,
        files=files,
    )
