"""Loading files into market_data: counts, idempotency, overwrites, rejects, failures."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from django_q.models import Schedule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchimport import samples, services
from batchimport.models import ImportFile, ImportJob, ImportStatus, RejectedRow
from batchimport.parsing import Layout
from batchimport.services import loader
from etl import pipeline
from etl.errors import DomainError
from etl.models import AssetClass, DataCorrection, DeadLetter, Market, MarketData, Symbol

pytestmark = pytest.mark.django_db


def run(path, **kw) -> ImportJob:
    job = services.import_job_create(path=str(path), **kw)
    return services.import_job_start(job=job)


def test_folder_import_counts_add_up(sample_folder):
    job = run("DATA")
    assert job.kind == ImportJob.Kind.ALL_MARKETS and job.status == ImportStatus.SUCCEEDED
    assert job.files_total == len(sample_folder.files) == job.files_done
    assert job.rows_read == sample_folder.rows
    assert job.rows_rejected == sample_folder.defects
    assert job.rows_inserted == sample_folder.rows - sample_folder.defects
    assert job.counts_add_up and job.rows_duplicates == 0
    assert MarketData.objects.count() == job.rows_inserted
    assert RejectedRow.objects.count() == job.rows_rejected
    for f in ImportFile.objects.all():
        assert f.counts_add_up and f.status == ImportStatus.SUCCEEDED
    children = {c.market: c for c in job.children.all()}
    assert set(children) == {"BIST", "CRYPTO", "NASDAQ", "NYSE"}
    assert sum(c.rows_read for c in children.values()) == job.rows_read
    assert {c.sla_minutes for c in children.values()} == {45, 20, 25}
    kinds = set(RejectedRow.objects.values_list("reason", flat=True))
    assert any(r.startswith("duplicate: same timestamp as line") for r in kinds)
    assert any(r.startswith("high ") for r in kinds)


def test_second_run_inserts_nothing_and_skips_every_file(sample_folder):
    run("DATA")
    again = run("DATA")
    assert again.status == ImportStatus.SUCCEEDED
    assert again.rows_inserted == 0 and again.rows_read == 0
    assert again.files_skipped == again.files_total == len(sample_folder.files)
    assert set(ImportFile.objects.filter(job__parent=again).values_list("status", flat=True)) == {"skipped"}


def test_markets_and_asset_class_as_the_folder_says(sample_folder):
    run("DATA")
    pairs = set(MarketData.objects.values_list("market", "asset_class").distinct())
    assert pairs == {("BIST", "BIST"), ("BINANCE", "CRYPTO"), ("NASDAQ", "NASDAQ"), ("NYSE", "NYSE")}
    thyao = MarketData.objects.filter(ticker="THYAO").first()
    assert thyao.extra["volume_unit"] == "TRY" and thyao.extra["paid_in_capital_try"] == 4.56e9
    # The path is kept once, on the file's row.
    assert ImportFile.objects.get(pk=thyao.import_file_id).relpath == "DATA/BIST/THYAO.csv"
    assert thyao.timeframe == "1d"


def test_a_known_symbol_gives_its_candles_their_link_and_true_asset_class(sample_folder, reference_data):
    thyao = Symbol.objects.create(
        ticker="THYAO", market=Market.objects.get(code="BIST"), asset_class=AssetClass.objects.get(code="STOCK_BIST")
    )
    run("DATA")
    assert set(MarketData.objects.filter(ticker="THYAO").values_list("asset_class", "symbol_id")) == {
        ("STOCK_BIST", thyao.pk)
    }


def test_a_new_pair_gets_its_symbol_created_at_write(sample_folder, reference_data):
    """The symbol the sync would create is created before the rows are written, so
    every candle is stored with its symbol and that symbol's asset class."""
    run("DATA")
    assert not MarketData.objects.filter(symbol=None).exists()
    garan = Symbol.objects.get(ticker="GARAN", market__code="BIST")
    assert (garan.asset_class.code, garan.source, garan.quote_currency) == ("STOCK_BIST", "discovered", "TRY")
    assert set(MarketData.objects.filter(ticker="GARAN").values_list("asset_class", "symbol_id")) == {
        ("STOCK_BIST", garan.pk)
    }
    classes = dict(MarketData.objects.values_list("market", "asset_class").distinct())
    assert classes == {"BIST": "STOCK_BIST", "BINANCE": "CRYPTO", "NASDAQ": "STOCK_NASDAQ", "NYSE": "STOCK_NYSE"}


def test_a_pair_inference_cannot_place_stays_unlinked_with_the_folders_word(sample_folder):
    """Without reference data no market is known: nothing is created, the candles keep
    the folder's word and wait for the sync, which reports them as today."""
    run("DATA")
    assert Symbol.objects.count() == 0
    assert set(MarketData.objects.values_list("symbol_id", flat=True).distinct()) == {None}
    assert MarketData.objects.filter(ticker="GARAN").values_list("asset_class", flat=True).first() == "BIST"


def test_after_sync_a_clean_reimport_needs_no_correction(sample_folder, reference_data, data_root):
    run("DATA")
    for name in ("sync", "correct"):
        pipeline.get_step(name).run(options={}, progress=None)
    MarketData.objects.all().delete()
    run("DATA", overwrite=True)
    assert pipeline.get_step("correct").run(options={}, progress=None)["rows_updated"] == 0
    assert not MarketData.objects.filter(symbol=None).exists()


def _one_file(data_root, rows=20, **kw):
    path = data_root / "NYSE" / "KO.csv"
    samples.write_file(path, Layout.STANDARD, ticker="KO", rows=rows, start=datetime(2024, 1, 1), **kw)
    return path


def _rewrite_close(path, line_no: int) -> None:
    """A different close, still valid: the middle of [low, high]."""
    lines = path.read_text().splitlines()
    f = lines[line_no - 1].split(",")
    f[5] = f"{(float(f[3]) + float(f[4])) / 2:.3f}"
    lines[line_no - 1] = ",".join(f)
    path.write_text("\n".join(lines) + "\n")


def test_changed_row_kept_unless_the_job_overwrites(data_root):
    path = _one_file(data_root)
    first = run("NYSE")
    assert first.rows_inserted == 20
    _rewrite_close(path, 5)
    new_close = Decimal(path.read_text().splitlines()[4].split(",")[5])
    kept = run("NYSE")
    assert (kept.rows_read, kept.rows_inserted, kept.rows_duplicates, kept.rows_changed) == (20, 0, 20, 1)
    ts = datetime(2024, 1, 4, tzinfo=UTC)  # line 5 = 4th bar from Monday 2024-01-01
    stored = MarketData.objects.get(ticker="KO", ts=ts)
    assert stored.close != new_close
    over = run("NYSE", overwrite=True)
    assert (over.rows_updated, over.rows_duplicates, over.rows_inserted) == (1, 19, 0) and over.counts_add_up
    stored.refresh_from_db()
    assert stored.close == new_close and ImportFile.objects.get(pk=stored.import_file_id).job_id == over.pk
    audit = DataCorrection.objects.get(kind="import_overwrite")
    assert audit.row_count == 1 and audit.run_ref == f"import:{over.pk}"
    assert audit.detail["sample"][0]["new"]["close"] == str(new_close.quantize(Decimal("1.0000000000")))


def test_repeated_timestamp_rejected_naming_the_first_line(data_root):
    path = _one_file(data_root, rows=10)
    lines = path.read_text().splitlines()
    lines.insert(8, lines[3])  # line 9 repeats line 4
    path.write_text("\n".join(lines) + "\n")
    job = run("NYSE")
    assert (job.rows_read, job.rows_inserted, job.rows_rejected) == (11, 10, 1)
    reject = RejectedRow.objects.get()
    assert (reject.line, reject.reason) == (9, "duplicate: same timestamp as line 4")
    assert reject.raw == lines[3]


def test_unknown_layout_goes_to_dead_letters(data_root):
    (data_root / "NYSE").mkdir()
    (data_root / "NYSE" / "JUNK.csv").write_text("foo,bar\n1,2\n")
    job = run("NYSE")
    assert job.status == ImportStatus.FAILED and "dead-lettered" in job.error
    f = ImportFile.objects.get()
    assert f.status == ImportStatus.DEAD_LETTERED and "unknown layout" in f.error and f.attempts == 1
    letter = DeadLetter.objects.get(kind="import_file")
    assert letter.ref == "NYSE/JUNK.csv" and letter.payload["file_id"] == f.pk


def test_passing_error_is_retried_with_backoff_then_dead_lettered(
    data_root, monkeypatch, django_capture_on_commit_callbacks
):
    _one_file(data_root, rows=5)
    real = loader.fingerprint
    calls = {"n": 0}

    def flaky(path):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EIO, "I/O error", str(path))
        return real(path)

    monkeypatch.setattr(loader, "fingerprint", flaky)
    job = services.import_job_create(path="NYSE", max_attempts=3)
    with django_capture_on_commit_callbacks(execute=True):
        services.import_job_start(job=job)
    f = ImportFile.objects.get()
    assert f.status == ImportStatus.QUEUED and f.attempts == 1 and "I/O error" in f.error
    assert timedelta(seconds=55) < f.next_attempt_at - timezone.now() <= timedelta(minutes=1)
    wake = Schedule.objects.get(func="batchimport.tasks.import_job_work")
    assert wake.schedule_type == Schedule.ONCE and wake.args == repr(job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.RUNNING
    # not due yet: a worker finds nothing to claim
    assert services.import_job_work(job_id=job.pk).files_processed == 0
    ImportFile.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))  # the clock moves on
    services.import_job_work(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED and job.rows_inserted == 5
    assert ImportFile.objects.get().attempts == 2


def test_backoff_doubles_and_caps_at_30_minutes():
    assert [services.backoff_minutes(a) for a in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_last_attempt_failure_is_dead_lettered(data_root, monkeypatch):
    _one_file(data_root, rows=5)

    def broken(path):
        raise OSError(errno.EIO, "I/O error", str(path))

    monkeypatch.setattr(loader, "fingerprint", broken)
    job = run("NYSE", max_attempts=1)
    assert job.status == ImportStatus.FAILED
    assert ImportFile.objects.get().status == ImportStatus.DEAD_LETTERED
    assert "gave up after 1 attempts" in DeadLetter.objects.get().error


def test_cancel_takes_effect_between_batches(data_root):
    _one_file(data_root, rows=300)
    job = services.import_job_create(path="NYSE", batch_size=50)
    batches = []

    def operator_cancels(n):
        batches.append(n)
        if len(batches) == 2:
            services.import_job_cancel(job=ImportJob.objects.get(pk=job.pk))

    services.import_job_start(job=job, on_batch=operator_cancels)
    job.refresh_from_db()
    assert job.status == ImportStatus.CANCELLED
    assert len(batches) == 2  # stopped right after the batch during which it was asked
    assert MarketData.objects.count() == 0 and RejectedRow.objects.count() == 0
    assert ImportFile.objects.get().status == ImportStatus.CANCELLED
    retried = services.import_job_retry(job=job, queue=False)
    assert retried.status == ImportStatus.SUCCEEDED and retried.rows_inserted == 300 and retried.attempt == 2


@pytest.mark.parametrize("bad", ["../outside", "/etc", "NYSE/../../x"])
def test_paths_outside_the_data_root_are_refused(data_root, bad):
    with pytest.raises(DomainError, match="outside the data root") as exc:
        services.import_job_create(path=bad, market="NYSE")
    assert exc.value.code == "path_outside_root"


def test_symlink_leading_out_is_refused(data_root, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (data_root / "NYSE").symlink_to(outside)
    with pytest.raises(DomainError, match="outside the data root"):
        services.import_job_create(path="NYSE")


def test_folder_without_market_needs_one(data_root):
    (data_root / "misc").mkdir()
    (data_root / "misc" / "X.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,1\n")
    with pytest.raises(DomainError, match="cannot tell the market"):
        services.import_job_create(path="misc")
    job = run("misc", market="nasdaq")
    assert job.market == "NASDAQ" and job.rows_inserted == 1


def test_pipeline_step_imports_when_given_a_path(data_root):
    _one_file(data_root, rows=5)
    step = pipeline.get_step("import")
    assert step.order == 20
    assert step.run(options={}, progress=None)["skipped"] is True
    result = step.run(options={"path": "NYSE"}, progress=None)
    assert result["rows_inserted"] == 5 and result["status"] == "succeeded"


def test_stage_rows_never_reach_market_data_before_the_end(data_root, monkeypatch):
    """A failure after the COPY batches, even after the INSERT, leaves market_data
    untouched: the rows and the counts are one transaction."""
    _one_file(data_root, rows=120)

    def worker_dies(*args, **kwargs):
        assert MarketData.objects.count() == 120  # inserted, not committed
        raise RuntimeError("worker died before its commit")

    job = services.import_job_create(path="NYSE", batch_size=25, max_attempts=1)
    monkeypatch.setattr(loader, "_finish", worker_dies)
    with pytest.raises(RuntimeError):
        loader.file_load(import_file=job.files.get(), job=job, batch_size=25)
    assert MarketData.objects.count() == 0


def test_numbers_reach_market_data_exactly(data_root):
    (data_root / "BIST").mkdir()
    (data_root / "BIST" / "SISE.csv").write_text(
        '"Tarih","Şimdi","Açılış","Yüksek","Düşük","Hac.","Fark %"\n'
        '"03.01.2024","12,410","12,300","12,500","12,200","94,52M","1,64%"\n'
        '"02.01.2024","1.212,10","1.200,00","1.220,00","1.190,00","1,01B","-0,85%"\n',
        encoding="utf-8",
    )
    (data_root / "NYSE").mkdir()
    (data_root / "NYSE" / "BRK.csv").write_text(
        'Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,"1,234.50","1,240.00","1,230.00","1,235.25",'
        "1235.25,4.56E9\n2024-01-03,0.00002853,0.00002854,0.00002851,0.00002854,,36304.2\n"
    )
    run("BIST")
    run("NYSE")
    sise = {r.ts.date().isoformat(): r for r in MarketData.objects.filter(ticker="SISE")}
    assert sise["2024-01-03"].close == Decimal("12.41") and sise["2024-01-03"].volume == Decimal("94520000")
    assert sise["2024-01-02"].close == Decimal("1212.10") and sise["2024-01-02"].volume == Decimal("1010000000")
    brk = list(MarketData.objects.filter(ticker="BRK").order_by("ts"))
    assert brk[0].open == Decimal("1234.50") and brk[0].volume == Decimal("4560000000")
    assert brk[1].close == Decimal("0.00002854") and brk[1].adj_close is None


def test_fresh_insert_falls_back_to_on_conflict_when_rows_appear_meanwhile(data_root, monkeypatch):
    """The overlap probe said "nothing stored" but a concurrent import stored the
    candles first: the unique key refuses the plain INSERT and ON CONFLICT runs."""
    _one_file(data_root, rows=8)
    run("NYSE")
    monkeypatch.setattr(loader, "_overlapping", lambda cur, entries: set())
    again = run("NYSE", overwrite=True)  # overwrite: the unchanged file is read again, not skipped
    assert again.status == ImportStatus.SUCCEEDED
    assert (again.rows_read, again.rows_inserted, again.rows_duplicates) == (8, 0, 8)
    assert MarketData.objects.count() == 8


ROW_KINDS = ["good", "good", "good", "high_below_low", "negative_volume", "bad_number", "repeat", "short", "blank"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(ROW_KINDS), min_size=1, max_size=40))
def test_counts_add_up_for_any_mix_of_rows(data_root, kinds):
    """read = inserted + duplicates + updated + rejected, and every rejected row is stored."""
    folder = data_root / "NYSE"
    folder.mkdir(exist_ok=True)
    lines: list[str] = []
    last_good = None
    day = expected_rows = expected_rejects = 0
    for kind in kinds:
        if kind == "blank":
            lines.append("")  # not a row
            continue
        expected_rows += 1
        if kind == "repeat" and last_good is not None:
            lines.append(last_good)  # same timestamp as an earlier row
            expected_rejects += 1
            continue
        day += 1
        stamp = f"{1990 + day:04d}-06-01"
        row = {
            "high_below_low": f"X,{stamp},10,9,11,10,10,100",
            "negative_volume": f"X,{stamp},10,11,9,10,10,-1",
            "bad_number": f"X,{stamp},10,11,9,abc,10,100",
            "short": f"X,{stamp},10",
        }.get(kind, f"X,{stamp},10,11,9,10.5,10.5,100")
        if row.endswith(",10.5,10.5,100"):
            last_good = row
        else:
            expected_rejects += 1
        lines.append(row)
    header = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim"
    (folder / "X.csv").write_text("\n".join([header, *lines]) + "\n")
    MarketData.objects.filter(ticker="X").delete()
    job = run("NYSE", overwrite=True)
    assert job.counts_add_up
    assert job.rows_read == expected_rows
    assert job.rows_rejected == expected_rejects == RejectedRow.objects.filter(job=job).count()
    assert job.rows_inserted == MarketData.objects.filter(ticker="X").count() == expected_rows - expected_rejects


def test_a_failed_import_mails_the_admins_once(data_root, settings, mailoutbox):
    settings.ADMINS = [("Ops", "ops@example.com")]
    (data_root / "NYSE").mkdir()
    (data_root / "NYSE" / "JUNK.csv").write_text("foo,bar\n1,2\n")
    job = run("NYSE")
    assert job.status == ImportStatus.FAILED
    assert [m.subject for m in mailoutbox] == [
        f"[MyTrader] CRITICAL: Import job #{job.pk} (NYSE) failed: 1 file(s) failed or dead-lettered"
    ]


def test_the_unchanged_probe_reads_the_groups_files_not_the_whole_history(data_root, reference_data):
    """Whether a file is unchanged since a successful import is one probe of the fingerprint index
    per file of the group: it was a hash over every succeeded file ever imported, a cost that grew
    with each hourly run."""
    import json

    from django.db import connection

    job = ImportJob.objects.create(kind=ImportJob.Kind.MARKET, market="NYSE", path="NYSE")
    history = [
        ImportFile(job=job, relpath=f"NYSE/H{i}.csv", market="NYSE", size=i, sha256=f"{i:064x}", status="succeeded")
        for i in range(3000)
    ]
    # Statistics taken while the table was small, as after a first import (autovacuum's analyze
    # lags a burst of inserts): the plan the old probe got then scanned every succeeded file.
    ImportFile.objects.bulk_create(history[:20])
    with connection.cursor() as cur:
        cur.execute("ANALYZE import_files")
    ImportFile.objects.bulk_create(history[20:])
    with connection.cursor() as cur:
        group = history[:5] + [ImportFile(relpath="NYSE/NEW.csv", size=1, sha256="0" * 64)]
        params = [[f.relpath for f in group], [f.size for f in group], [f.sha256 for f in group], [-1]]
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + loader.UNCHANGED_SQL, params)
        plan = cur.fetchone()[0]
        cur.execute(loader.UNCHANGED_SQL, params)
        found = {row[0] for row in cur.fetchall()}
    assert found == {f.relpath for f in history[:5]}

    def rows_of_import_files(node) -> int:
        own = node["Actual Rows"] * node["Actual Loops"] if node.get("Relation Name") == "import_files" else 0
        return own + sum(rows_of_import_files(child) for child in node.get("Plans", []))

    plan = plan if isinstance(plan, list) else json.loads(plan)
    assert rows_of_import_files(plan[0]["Plan"]) <= len(group)
