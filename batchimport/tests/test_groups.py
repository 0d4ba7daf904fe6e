"""Many small files loaded in groups (several per staging flush and transaction):
the same rows and the same per-file accounting as one file at a time, a bad file
failing alone, cancel between flushes, and candles linked to their symbols at write."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection

from batchimport import samples, services
from batchimport.models import ImportFile, ImportJob, ImportStatus, RejectedRow
from batchimport.parsing import CsvFileReader, Layout
from batchimport.services import loader
from batchimport.tests.test_distributed import child_env, spawn, wait_for
from etl import pipeline
from etl import services as etl_services
from etl.models import DataCorrection, DeadLetter, MarketData, Symbol

pytestmark = pytest.mark.django_db

# Per market folder: the layouts its files come in (the file name decides nothing but the ticker).
LAYOUTS = {
    "NYSE": [Layout.STANDARD, Layout.YAHOO],
    "NASDAQ": [Layout.YAHOO, Layout.STANDARD],
    "Crypto": [Layout.BINANCE, Layout.STANDARD],
    "BIST": [Layout.BIST_DETAILED, Layout.STANDARD, Layout.INVESTING_TR],
}
TICKERS = {"NYSE": ["KO", "IBM", "GE"], "NASDAQ": ["AAPL", "MSFT"], "Crypto": ["BTCUSDT", "ETHUSDT"], "BIST": ["THYAO"]}
# Names that all read as the same ticker: files of one series in one group.
SUFFIXES = ["", "_hist", "_daily", "_data"]


def _shuffle_rows(path: Path, rng: random.Random) -> None:
    """Rows out of order (the header stays first): the file is not monotonic."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    head, body = lines[:1], [line for line in lines[1:] if line]
    rng.shuffle(body)
    path.write_text("\n".join(head + body) + "\n")


def write_scenario(root: Path, *, seed: int, step: int) -> None:
    """A random scraper folder: several files per series (overlapping, some
    restating prices, some with defects or out of order), and bad files. `step` 1
    and 2 rewrite some files (restatements and new rows), as the scraper does."""
    rng = random.Random(seed * 100 + step)
    shapes = random.Random(seed)  # the same files at every step; their content moves
    for folder, names in TICKERS.items():
        for ticker in names:
            for suffix in shapes.sample(SUFFIXES, shapes.randint(1, 3)):
                path = root / folder / f"{ticker}{suffix}.csv"
                layout = shapes.choice(LAYOUTS[folder])
                if step and rng.random() < 0.5:
                    continue  # unchanged since the last step: skipped by the next import
                samples.write_file(
                    path,
                    layout,
                    ticker=ticker,
                    rows=rng.randint(3, 40),
                    seed=rng.choice([1, 2, 3 + step]),  # the same prices, or restated ones
                    start=datetime(2024, 1, 1) + timedelta(days=rng.randint(0, 30)),
                    defect_every=rng.choice([0, 0, 4, 9]),
                    with_header=layout != Layout.BINANCE or rng.random() < 0.5,
                )
                if rng.random() < 0.2 and layout != Layout.INVESTING_TR:
                    _shuffle_rows(path, rng)
    (root / "NYSE" / "JUNK.csv").write_text("foo,bar\n1,2\n")  # no known layout: dead-lettered
    (root / "NASDAQ" / "EMPTY.csv").write_text("")
    (root / "BIST" / "LATIN.csv").write_bytes(b"Tarih,\xfe\xff\n1,2\n")  # the header is not UTF-8


def snapshot() -> dict:
    """Everything an import decides, by file path (ids differ between runs)."""
    files = {}
    for f in ImportFile.objects.select_related("job"):
        counts = tuple(getattr(f, name) for name in ImportFile.COUNT_FIELDS)
        files[(f.job.schedule_name, f.relpath)] = (f.status, counts, f.layout, f.timeframe, f.ticker, f.error[:80])
        assert f.counts_add_up, f.relpath
    rows = MarketData.objects.values_list(
        "ticker", "market", "timeframe", "ts", "open", "high", "low", "close", "volume", "adj_close",
        "asset_class", "extra", "import_file_id", "symbol__ticker", "symbol__market__code",
    )  # fmt: skip
    paths = dict(ImportFile.objects.values_list("pk", "relpath"))
    rows = [(*row[:12], paths.get(row[12]), *row[13:]) for row in rows]
    return {
        "files": files,
        "jobs": sorted(
            (j.schedule_name, j.market, j.status, j.files_done, j.files_skipped, j.files_failed)
            + tuple(getattr(j, name) for name in ImportJob.COUNT_FIELDS)
            for j in ImportJob.objects.all()
        ),
        "rows": sorted((*row[:11], json.dumps(row[11], sort_keys=True), *row[12:]) for row in rows),
        "rejects": sorted(RejectedRow.objects.values_list("job__schedule_name", "file__relpath", "line", "reason")),
        "dead": sorted(DeadLetter.objects.values_list("ref", "error")),
        "overwrites": sorted(
            (c.run_ref.split(":")[0], c.detail["file"], c.row_count, str(c.detail["sample"]))
            for c in DataCorrection.objects.filter(kind="import_overwrite")
        ),
        "symbols": set(Symbol.objects.values_list("ticker", "market__code", "asset_class__code")),
    }


def import_all(root: Path, *, seed: int) -> dict:
    """Three imports of the folder as the scraper rewrites it, as one worker runs them."""
    shutil.rmtree(root, ignore_errors=True)
    for step, overwrite in ((0, False), (1, False), (2, True)):
        write_scenario(root, seed=seed, step=step)
        job = services.import_job_create(
            path="DATA", overwrite=overwrite, max_concurrency=1, schedule_name=f"step{step}", batch_size=7
        )
        services.import_job_start(job=job)
    return snapshot()


def reset() -> None:
    MarketData.objects.all().delete()
    ImportJob.objects.all().delete()
    DeadLetter.objects.all().delete()
    DataCorrection.objects.all().delete()
    Symbol.objects.all().delete()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_groups_give_the_rows_and_accounting_of_one_file_at_a_time(data_root, reference_data, settings, seed):
    settings.IMPORT_GROUP_FILES = 1
    one_at_a_time = import_all(data_root / "DATA", seed=seed)
    reset()
    settings.IMPORT_GROUP_FILES = 100
    grouped = import_all(data_root / "DATA", seed=seed)
    assert grouped["files"] == one_at_a_time["files"]
    for name in ("jobs", "rows", "rejects", "dead", "overwrites", "symbols"):
        assert grouped[name] == one_at_a_time[name], name
    # the scenario is what it says: every kind of outcome happened
    statuses = {status for status, *_ in grouped["files"].values()}
    assert statuses == {ImportStatus.SUCCEEDED, ImportStatus.SKIPPED, ImportStatus.DEAD_LETTERED}
    totals = [sum(counts[i] for _, counts, *_ in grouped["files"].values()) for i in range(6)]
    read, inserted, duplicates, updated, rejected, changed = totals
    assert inserted and duplicates and updated and rejected and changed
    assert any(reason.startswith("duplicate: same timestamp") for *_, reason in grouped["rejects"])
    assert not MarketData.objects.filter(symbol=None).exists()
    assert set(MarketData.objects.filter(market="NYSE").values_list("asset_class", flat=True)) == {"STOCK_NYSE"}


def _six_files(data_root: Path) -> None:
    for ticker in ("KO", "IBM", "GE", "XOM", "JPM", "WMT"):
        samples.write_file(data_root / "NYSE" / f"{ticker}.csv", Layout.STANDARD, ticker=ticker, rows=30)


@pytest.fixture
def writes(monkeypatch) -> list[int]:
    """The number of files of each group's write transaction."""
    seen: list[int] = []
    real = loader._write
    monkeypatch.setattr(loader, "_write", lambda cur, entries: seen.append(len(entries)) or real(cur, entries))
    return seen


def test_a_group_is_one_claim_one_flush_and_one_transaction(data_root, reference_data, writes):
    _six_files(data_root)
    flushes = []
    job = services.import_job_create(path="NYSE", max_concurrency=1)
    services.import_job_start(job=job, on_batch=flushes.append)
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED and job.rows_inserted == 180 and job.files_done == 6
    assert writes == [6] and flushes == [180]
    assert len(set(ImportFile.objects.values_list("claimed_by", flat=True))) == 1
    assert set(ImportFile.objects.values_list("attempts", flat=True)) == {1}


def test_a_job_for_several_workers_leaves_each_a_share(data_root, reference_data, writes, settings):
    _six_files(data_root)
    services.import_job_start(job=services.import_job_create(path="NYSE", max_concurrency=2))
    assert writes == [2, 1, 1, 1, 1]  # a quarter of what is left (rounded up): two workers, two claims each


def test_a_job_run_here_alone_claims_groups_for_its_own_workers(data_root, reference_data, writes):
    """The pipeline's step and the command create the job and run it in this process: no queued
    task will take a share, so one worker claims every file at once (the market's concurrency,
    here 2, stays the job's setting); threads here leave each other a share."""
    _six_files(data_root)
    job = services.import_job_submit(queue=False, path="NYSE", max_concurrency=2)
    assert job.max_concurrency == 2 and job.files_done == 6 and writes == [6]
    job.files_done = 0
    assert services.group_limit(job=job) == 2  # a quarter: two queued tasks, two claims each
    assert services.group_limit(job=job, workers=1) == 6
    assert services.group_limit(job=job, workers=3) == 1


def test_groups_are_bounded_in_files_and_bytes(data_root, reference_data, writes, settings):
    _six_files(data_root)
    settings.IMPORT_GROUP_FILES = 4
    services.import_job_start(job=services.import_job_create(path="NYSE", max_concurrency=1))
    assert writes == [4, 2]
    ImportJob.objects.all().delete()
    MarketData.objects.all().delete()
    writes.clear()
    settings.IMPORT_GROUP_BYTES = 2 * max(path.stat().st_size for path in (data_root / "NYSE").iterdir())
    services.import_job_start(job=services.import_job_create(path="NYSE", max_concurrency=1))
    assert writes == [2, 2, 2]


def test_one_bad_file_fails_alone_and_the_rest_of_its_group_is_written(data_root, reference_data):
    good = [
        samples.write_file(data_root / "NYSE" / f"{t}.csv", Layout.STANDARD, ticker=t, rows=20, defect_every=6)
        for t in ("A", "B", "D", "E")
    ]
    (data_root / "NYSE" / "C.csv").write_text("foo,bar\n1,2\n")
    job = services.import_job_start(job=services.import_job_create(path="NYSE", max_concurrency=1))
    assert job.status == ImportStatus.FAILED and "NYSE/C.csv" in job.error
    files = {f.ticker: f for f in ImportFile.objects.all()}
    assert files["C"].status == ImportStatus.DEAD_LETTERED and "unknown layout" in files["C"].error
    assert DeadLetter.objects.get().ref == "NYSE/C.csv"
    for summary in good:
        f = files[summary.path.stem]
        assert (f.status, f.rows_read, f.rows_rejected) == (ImportStatus.SUCCEEDED, summary.rows, summary.defects)
    assert MarketData.objects.count() == sum(s.good for s in good) == job.rows_inserted
    assert RejectedRow.objects.count() == sum(s.defects for s in good) == job.rows_rejected
    assert job.counts_add_up and job.files_done == 4 and job.files_failed == 1


def test_a_file_failing_mid_read_leaves_the_stage_and_is_retried_alone(data_root, reference_data, monkeypatch):
    """A read error after some of the file's rows were flushed to the stage (and its
    rejects to rejected_rows): they are taken back, and the file is retried later."""
    for ticker in ("A", "B", "C"):
        samples.write_file(
            data_root / "NYSE" / f"{ticker}.csv", Layout.STANDARD, ticker=ticker, rows=40, defect_every=5
        )
    real_iter = CsvFileReader.__iter__

    def disk_fails_in_b(reader):
        for n, item in enumerate(real_iter(reader)):
            if reader.ticker == "B" and n == 25:
                raise OSError(errno.EIO, "Input/output error", str(reader.path))
            yield item

    monkeypatch.setattr(CsvFileReader, "__iter__", disk_fails_in_b)
    job = services.import_job_start(job=services.import_job_create(path="NYSE", batch_size=10, max_concurrency=1))
    files = {f.ticker: f for f in ImportFile.objects.all()}
    assert files["B"].status == ImportStatus.QUEUED and "Input/output error" in files["B"].error
    assert files["B"].next_attempt_at is not None
    assert {files["A"].status, files["C"].status} == {ImportStatus.SUCCEEDED}
    assert not MarketData.objects.filter(ticker="B").exists()
    assert not RejectedRow.objects.filter(file=files["B"]).exists()
    assert MarketData.objects.count() == files["A"].rows_inserted + files["C"].rows_inserted == 2 * 40
    job.refresh_from_db()
    assert job.status == ImportStatus.RUNNING and job.counts_add_up  # B is still to do


def test_a_row_the_database_refuses_fails_its_file_alone(data_root, reference_data, monkeypatch):
    """A statement refused for its data fails the whole group's statement; the files are
    then loaded one by one, and only the file holding the row is dead-lettered."""
    for ticker in ("A", "BAD", "C"):
        samples.write_file(data_root / "NYSE" / f"{ticker}.csv", Layout.STANDARD, ticker=ticker, rows=10)
    refused = "CASE WHEN f.ticker = 'BAD' THEN (1 / (length(f.ticker) - 3))::text ELSE f.asset_class END,"
    for name in ("INSERT_FRESH_SQL", "INSERT_SQL", "INSERT_COUNTED_SQL"):
        monkeypatch.setattr(loader, name, getattr(loader, name).replace("f.asset_class,", refused))
    job = services.import_job_start(job=services.import_job_create(path="NYSE", max_concurrency=1))
    files = {f.ticker: f for f in ImportFile.objects.all()}
    assert files["BAD"].status == ImportStatus.DEAD_LETTERED and "division by zero" in files["BAD"].error
    assert files["BAD"].attempts == 1  # not retried: it would fail the same way
    assert {files["A"].status, files["C"].status} == {ImportStatus.SUCCEEDED}
    assert MarketData.objects.count() == 20 and job.rows_inserted == 20


def test_cancel_stops_the_whole_group_between_flushes(data_root, reference_data):
    for ticker in ("A", "B", "C", "D"):
        samples.write_file(data_root / "NYSE" / f"{ticker}.csv", Layout.STANDARD, ticker=ticker, rows=30)
    job = services.import_job_create(path="NYSE", batch_size=20, max_concurrency=1)
    batches = []

    def operator_cancels(n):
        batches.append(n)
        if len(batches) == 2:
            services.import_job_cancel(job=ImportJob.objects.get(pk=job.pk))

    services.import_job_start(job=job, on_batch=operator_cancels)
    job.refresh_from_db()
    assert job.status == ImportStatus.CANCELLED and len(batches) == 2
    assert set(ImportFile.objects.values_list("status", flat=True)) == {ImportStatus.CANCELLED}
    assert not MarketData.objects.exists() and not RejectedRow.objects.exists()
    retried = services.import_job_retry(job=job, queue=False)
    assert retried.status == ImportStatus.SUCCEEDED and retried.rows_inserted == 120


def test_a_file_of_a_series_twice_in_one_group_sees_the_first_as_one_at_a_time_would(data_root, reference_data):
    """KO.csv and KO_hist.csv are one series: the second file's overlapping rows are
    duplicates of the first's (or, with overwrite, rewrite them), in claim order."""
    samples.write_file(data_root / "NYSE" / "KO.csv", Layout.STANDARD, ticker="KO", rows=10, seed=1)
    samples.write_file(data_root / "NYSE" / "KO_hist.csv", Layout.STANDARD, ticker="KO", rows=15, seed=2)
    job = services.import_job_start(job=services.import_job_create(path="NYSE", overwrite=True, max_concurrency=1))
    first, second = ImportFile.objects.order_by("id")
    assert first.relpath == "NYSE/KO.csv" and (first.rows_inserted, first.rows_duplicates) == (10, 0)
    counts = (second.rows_inserted, second.rows_updated, second.rows_duplicates, second.rows_changed)
    assert counts == (5, 10, 0, 0) and job.counts_add_up
    assert MarketData.objects.filter(ticker="KO").count() == 15
    file_ids = set(MarketData.objects.values_list("import_file_id", flat=True))
    assert set(ImportFile.objects.filter(pk__in=file_ids).values_list("relpath", flat=True)) == {"NYSE/KO_hist.csv"}


# ---------------------------------------------------------------- linked at write


def _places() -> dict[int, tuple]:
    """Each candle's physical place: an UPDATE moves a row, even to the same values."""
    with connection.cursor() as cur:
        cur.execute("SELECT id, ctid::text FROM market_data")
        return dict(cur.fetchall())


def test_a_clean_import_needs_no_sync_and_no_correction(sample_folder, reference_data):
    services.import_job_start(job=services.import_job_create(path="DATA"))
    assert not MarketData.objects.filter(symbol=None).exists()
    assert set(MarketData.objects.filter(market="NYSE").values_list("asset_class", flat=True)) == {"STOCK_NYSE"}
    before = _places()
    sync = pipeline.get_step("sync").run(options={}, progress=None)
    assert (sync["symbols_created"], sync["candles_linked"], sync["pairs_found"]) == (0, 0, 0)
    relink = etl_services.symbols_sync(skip_existing=False)
    assert (relink.symbols_created, relink.symbols_updated, relink.candles_linked) == (0, 0, 0)
    correct = pipeline.get_step("correct").run(options={}, progress=None)
    assert correct["rows_updated"] == 0
    assert _places() == before  # not one row rewritten


def test_the_sync_links_only_what_arrived_unlinked(data_root, settings):
    """Candles imported before their market existed arrive unlinked; the sync links
    those, and leaves the candles the import linked where they are."""
    samples.write_file(data_root / "NYSE" / "KO.csv", Layout.STANDARD, ticker="KO", rows=12)
    services.import_job_start(job=services.import_job_create(path="NYSE"))  # no reference data yet
    assert MarketData.objects.filter(symbol=None).count() == 12
    etl_services.reference_data_bootstrap()
    samples.write_file(data_root / "NASDAQ" / "AAPL.csv", Layout.STANDARD, ticker="AAPL", rows=7)
    services.import_job_start(job=services.import_job_create(path="NASDAQ"))
    linked_at_write = {pk: place for pk, place in _places().items() if pk in _ids("AAPL")}
    assert len(linked_at_write) == 7 and not MarketData.objects.filter(ticker="AAPL", symbol=None).exists()
    sync = etl_services.symbols_sync()
    assert (sync.pairs_found, sync.symbols_created, sync.candles_linked) == (1, 1, 12)
    assert {pk: place for pk, place in _places().items() if pk in linked_at_write} == linked_at_write


def _ids(ticker: str) -> set[int]:
    return set(MarketData.objects.filter(ticker=ticker).values_list("id", flat=True))


# ---------------------------------------------------------------- killed mid-group


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_group_then_resumed_gives_the_uninterrupted_rows(data_root, tmp_path):
    etl_services.reference_data_bootstrap()
    for market in ("NYSE", "NASDAQ"):  # the same files twice: NASDAQ is the uninterrupted reference
        for i in range(160):
            ticker = f"T{i:03d}"
            path = data_root / market / f"{ticker}.csv"
            samples.write_file(path, Layout.STANDARD, ticker=ticker, rows=200, seed=i, defect_every=37)
    reference = services.import_job_start(job=services.import_job_create(path="NASDAQ", max_concurrency=1))
    assert reference.status == ImportStatus.SUCCEEDED

    job = services.import_job_create(path="NYSE", batch_size=500, max_concurrency=1)
    files = ImportFile.objects.filter(job=job)
    worker = spawn(
        f"from batchimport import services\nservices.import_job_work(job_id={job.pk})",
        child_env(data_root, IMPORT_GROUP_FILES="40"),
        tmp_path / "worker.log",
    )
    mid_group = lambda: files.filter(status="succeeded").count() >= 40 and files.filter(status="running").exists()  # noqa: E731
    wait_for(mid_group, 120, "the worker to be part-way through its second group")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)

    done = list(files.filter(status=ImportStatus.SUCCEEDED))
    cut = list(files.filter(status=ImportStatus.RUNNING))
    assert len(cut) == 40 and len(done) % 40 == 0  # whole groups only
    assert MarketData.objects.filter(market="NYSE").count() == sum(f.rows_inserted for f in done)
    assert not MarketData.objects.filter(market="NYSE", ticker__in=[f.ticker for f in cut]).exists()

    def resumed() -> bool:  # the dead worker's claims are taken over once PostgreSQL has ended its session
        services.import_job_work(job_id=job.pk)
        return ImportJob.objects.get(pk=job.pk).status in (ImportStatus.SUCCEEDED, ImportStatus.FAILED)

    wait_for(resumed, 60, "the resumed job to finish")
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED
    for name in ImportJob.COUNT_FIELDS:
        assert getattr(job, name) == getattr(reference, name), name
    columns = ("ticker", "ts", "open", "high", "low", "close", "volume", "adj_close")
    assert set(MarketData.objects.filter(market="NYSE").values_list(*columns)) == set(
        MarketData.objects.filter(market="NASDAQ").values_list(*columns)
    )
    assert RejectedRow.objects.filter(job=job).count() == reference.rows_rejected
    attempts = dict(files.values_list("ticker", "attempts"))
    assert {attempts[f.ticker] for f in cut} == {2} and {attempts[f.ticker] for f in done} == {1}
    assert not MarketData.objects.filter(symbol=None).exists()
    assert set(MarketData.objects.filter(market="NYSE").values_list("asset_class", flat=True)) == {"STOCK_NYSE"}
