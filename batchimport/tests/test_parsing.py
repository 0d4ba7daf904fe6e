"""The pure parsing module: layouts, numbers, dates, validation, streaming."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from batchimport import samples
from batchimport.parsing import (
    Candle,
    CsvFileReader,
    FieldError,
    FileFormatError,
    Layout,
    Reject,
    detect_layout,
    market_from_path,
    parse_number,
    parse_number_tr,
    parse_timestamp,
    ticker_from_filename,
    timeframe_from_gaps,
)


def as_numbers(c: Candle) -> Candle:
    """Candle numbers are text for PostgreSQL; compare them as numbers."""
    return Candle(c.line, c.ts, *(None if x is None else Decimal(x) for x in c[2:8]), c.extra)


def read(path, **kw) -> tuple[CsvFileReader, list[Candle], list[Reject]]:
    reader = CsvFileReader(path, **kw)
    items = list(reader)
    candles = [as_numbers(i) for i in items if isinstance(i, Candle)]
    return reader, candles, [i for i in items if isinstance(i, Reject)]


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12,410", Decimal("12.41")),
        ("94,52M", Decimal("94520000")),
        ("1,01B", Decimal("1010000000")),
        ("512,3K", Decimal("512300")),
        ("1.234,50", Decimal("1234.5")),
        ("12.410", Decimal("12410")),
        ("1,64%", Decimal("1.64")),
        ("-0,85%", Decimal("-0.85")),
    ],
)
def test_turkish_numbers(text, value):
    assert parse_number_tr(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4.56E9", Decimal("4560000000")),
        ("1,234.56", Decimal("1234.56")),
        ("1,234,567", Decimal("1234567")),
        ("4006500.0", Decimal("4006500")),
        (" 37.03 ", Decimal("37.03")),
        ("0.00002853", Decimal("0.00002853")),
    ],
)
def test_english_numbers(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["", "abc", "NaN", "inf", "1.2.3x"])
def test_bad_numbers_raise(text):
    with pytest.raises(FieldError):
        parse_number(text)


def test_turkish_dash_is_not_a_number():
    with pytest.raises(FieldError, match="no value"):
        parse_number_tr("-")


# ---------------------------------------------------------------- dates, names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1637971200000", datetime(2021, 11, 27, tzinfo=UTC)),
        ("1736121600000000", datetime(2025, 1, 6, tzinfo=UTC)),
        ("1736121600", datetime(2025, 1, 6, tzinfo=UTC)),
        ("03-01-2024", datetime(2024, 1, 3)),
        ("03.01.2024", datetime(2024, 1, 3)),
        ("2024-01-03", datetime(2024, 1, 3)),
        ("2024-01-03T09:30:00Z", datetime(2024, 1, 3, 9, 30, tzinfo=UTC)),
    ],
)
def test_timestamps(text, expected):
    assert parse_timestamp(text) == expected


def test_aware_timestamp_keeps_offset():
    ts = parse_timestamp("2022-01-03 00:00:00-05:00")
    assert ts.utcoffset().total_seconds() == -5 * 3600


@pytest.mark.parametrize(
    ("name", "ticker"),
    [("THYAO.csv", "THYAO"), ("AGROT_historical.csv", "AGROT"), ("btc_data.csv", "BTC"), ("KO_hist.csv", "KO")],
)
def test_ticker_from_file_name(name, ticker):
    assert ticker_from_filename(name) == ticker


def test_market_from_folder():
    assert market_from_path("/data/DATA/Crypto/BTC.csv") == "CRYPTO"
    assert market_from_path("DATA/BIST/sub/THYAO.csv") == "BIST"
    assert market_from_path("/tmp/x/THYAO.csv") is None


def test_timeframe_from_gaps():
    base = datetime(2024, 1, 1, 9, 30)
    assert timeframe_from_gaps([base.replace(minute=m) for m in (0, 15, 30, 45)]) == "15m"
    assert timeframe_from_gaps([datetime(2024, 1, d) for d in (5, 8, 9)]) == "1d"
    assert timeframe_from_gaps([datetime(2024, 1, 1), datetime(2024, 1, 8)]) == "1w"
    assert timeframe_from_gaps([base]) is None


def test_unknown_layout_is_a_file_error():
    with pytest.raises(FileFormatError, match="unknown layout"):
        detect_layout("foo,bar,baz\n")


def test_empty_file_is_a_file_error(tmp_path):
    path = tmp_path / "EMPTY.csv"
    path.write_text("\n\n")
    with pytest.raises(FileFormatError, match="empty"):
        list(CsvFileReader(path))


def test_non_utf8_header_is_a_file_error(tmp_path):
    path = tmp_path / "BAD.csv"
    path.write_bytes(b"\xff\xfeD\x00a\x00t\x00e\x00\n2024-01-02,1,1,1,1,1\n")
    with pytest.raises(FileFormatError, match="the header.*not UTF-8 text at byte 0"):
        list(CsvFileReader(path))


# ---------------------------------------------------------------- layouts end to end


def test_bist_detailed_mapping(tmp_path):
    path = tmp_path / "BIST" / "THYAO.csv"
    summary = samples.write_file(path, Layout.BIST_DETAILED, ticker="THYAO", rows=30, start=datetime(2024, 1, 2))
    reader, candles, rejects = read(path)
    assert reader.meta.layout == Layout.BIST_DETAILED
    assert (reader.meta.ticker, reader.meta.market, reader.meta.timeframe) == ("THYAO", "BIST", "1d")
    assert len(candles) == summary.rows and not rejects
    header = samples.BIST_DETAILED_HEADER
    first = dict(zip(header, path.read_text().splitlines()[1].split(","), strict=True))
    c = candles[0]
    assert c.ts == datetime(2024, 1, 2, tzinfo=UTC)
    assert c.open == Decimal(first["HG_AOF"])
    assert c.high == Decimal(first["HG_MAX"]) and c.low == Decimal(first["HG_MIN"])
    assert c.close == Decimal(first["HG_KAPANIS"])
    assert c.adj_close == Decimal(first["DuzeltilmisKapanis"])
    assert c.volume == Decimal(first["HG_HACIM"])
    assert c.extra["paid_in_capital_try"] == 4.56e9
    assert c.extra["open_is_vwap"] is True and c.extra["volume_unit"] == "TRY"
    assert c.extra["vwap_adj"] == float(first["AcilisFiyati"])


def test_bist_iso_and_dotted_dates(tmp_path):
    head = ",".join(samples.BIST_DETAILED_HEADER)
    row = samples.BIST_DETAILED_HEADER[:]  # reuse names as placeholders, then fill the used columns
    values = dict.fromkeys(row, "")
    values.update(HG_AOF="10.5", HG_MAX="11", HG_MIN="10", HG_KAPANIS="10.8", HG_HACIM="1.5E6", HisseKodu="X")
    lines = [head]
    for date_text in ("02.01.2024", "2024-01-03"):
        values["Tarih"] = date_text
        lines.append(",".join(values[c] for c in row))
    path = tmp_path / "BIST" / "X.csv"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    _, candles, rejects = read(path)
    assert not rejects
    assert [c.ts.date().isoformat() for c in candles] == ["2024-01-02", "2024-01-03"]
    assert candles[0].volume == Decimal("1500000") and candles[0].adj_close is None


def test_standard_layout_crlf(tmp_path):
    path = tmp_path / "NYSE" / "KO.csv"
    samples.write_file(path, Layout.STANDARD, ticker="KO", rows=10, crlf=True, start=datetime(2024, 1, 2))
    assert b"\r\n" in path.read_bytes()
    reader, candles, rejects = read(path)
    assert reader.meta.layout == Layout.STANDARD and len(candles) == 10 and not rejects
    fields = path.read_text().splitlines()[1].split(",")
    assert candles[0].open == Decimal(fields[2]) and candles[0].close == Decimal(fields[5])
    assert candles[0].adj_close == Decimal(fields[6]) and candles[0].volume == Decimal(fields[7])


def test_investing_semicolon_bom_newest_first(tmp_path):
    path = tmp_path / "BIST" / "GARAN_data.csv"
    samples.write_file(
        path, Layout.INVESTING_TR, ticker="GARAN", rows=20, delimiter=";", bom=True, start=datetime(2024, 1, 2)
    )
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    reader, candles, rejects = read(path)
    assert reader.meta.layout == Layout.INVESTING_TR and not rejects and len(candles) == 20
    assert candles[0].ts > candles[-1].ts  # newest first, kept as such
    assert reader.monotonic
    assert candles[0].extra == {"change_pct": 1.64}


def test_investing_values(tmp_path):
    path = tmp_path / "BIST" / "SISE.csv"
    path.parent.mkdir()
    path.write_text(
        '"Tarih","Şimdi","Açılış","Yüksek","Düşük","Hac.","Fark %"\n'
        '"03.01.2024","12,410","12,300","12,500","12,200","94,52M","1,64%"\n'
        '"02.01.2024","1.212,10","1.200,00","1.220,00","1.190,00","1,01B","-0,85%"\n',
        encoding="utf-8",
    )
    _, candles, rejects = read(path)
    assert not rejects
    assert (candles[0].close, candles[0].volume) == (Decimal("12.41"), Decimal("94520000"))
    assert (candles[1].close, candles[1].volume) == (Decimal("1212.10"), Decimal("1010000000"))
    assert candles[1].extra == {"change_pct": -0.85}


def test_yfinance_intraday_to_utc(tmp_path):
    path = tmp_path / "NASDAQ" / "EA.csv"
    path.parent.mkdir()
    path.write_text(
        "Datetime,Open,High,Low,Close,Adj Close,Volume,Dividends,Stock Splits\n"
        "2026-05-26 04:00:00-04:00,170.0712,200.8117,170.0712,199.85,199.6612091682,0,0,0\n"
        "2026-05-26 04:15:00-04:00,199.9,200.1,199.5,200.0,199.9,1500,0.5,0\n"
        "2026-05-26 04:45:00-04:00,203.9988,203.9988,203.9988,203.9988,203.806089951772,0,0,0\n"
    )
    reader, candles, rejects = read(path)
    assert reader.meta.timeframe == "15m" and not rejects
    assert candles[0].ts == datetime(2026, 5, 26, 8, 0, tzinfo=UTC)
    assert candles[0].volume == 0 and candles[0].extra is None
    assert candles[1].extra == {"dividends": 0.5}


def test_yahoo_daily_aware_keeps_trading_date(tmp_path):
    path = tmp_path / "NASDAQ" / "CALM.csv"
    samples.write_file(path, Layout.YAHOO, ticker="CALM", rows=5, tz_offset="-05:00", start=datetime(2022, 1, 3))
    _, candles, _ = read(path)
    assert candles[0].ts == datetime(2022, 1, 3, tzinfo=UTC)


def test_naive_intraday_read_in_market_zone(tmp_path):
    path = tmp_path / "BIST" / "THYAO.csv"
    path.parent.mkdir()
    path.write_text("Date,Open,High,Low,Close,Volume\n2024-01-03 10:00:00,1,2,1,2,5\n2024-01-03 11:00:00,2,2,1,1,5\n")
    reader, candles, _ = read(path)
    assert reader.meta.timeframe == "1h"
    assert candles[0].ts == datetime(2024, 1, 3, 7, 0, tzinfo=UTC)  # Istanbul is UTC+3


def test_pandas_index_column(tmp_path):
    path = tmp_path / "NYSE" / "SPY.csv"
    samples.write_file(path, Layout.YAHOO, ticker="SPY", rows=8, index_column=True, start=datetime(2024, 1, 2))
    assert path.read_text().startswith(",date,open")
    reader, candles, rejects = read(path)
    assert reader.meta.layout == Layout.YAHOO and len(candles) == 8 and not rejects
    assert candles[0].volume == Decimal(path.read_text().splitlines()[1].split(",")[-1])


def test_quoted_thousands_separators(tmp_path):
    path = tmp_path / "NYSE" / "BRK.csv"
    path.parent.mkdir()
    path.write_text(
        'Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,"1,234.50","1,240.00","1,230.00","1,235.25",1235.25,'
        '"4,006,500"\n'
    )
    _, candles, rejects = read(path)
    assert not rejects
    assert candles[0].open == Decimal("1234.50") and candles[0].volume == Decimal("4006500")


@pytest.mark.parametrize(("with_header", "epoch_us"), [(False, False), (True, False), (False, True)])
def test_binance_klines(tmp_path, with_header, epoch_us):
    path = tmp_path / "Crypto" / "BTC.csv"
    start = datetime(2025, 1, 6) if epoch_us else datetime(2021, 11, 29)
    samples.write_file(
        path, Layout.BINANCE, ticker="BTC", rows=6, with_header=with_header, epoch_us=epoch_us, start=start
    )
    reader, candles, rejects = read(path)
    assert reader.meta.layout == Layout.BINANCE and len(candles) == 6 and not rejects
    assert reader.meta.market == "CRYPTO" and reader.meta.timeframe == "1d"
    assert candles[0].ts == start.replace(tzinfo=UTC)
    assert set(candles[0].extra) == {"quote_volume", "trades", "taker_buy_base_volume", "taker_buy_quote_volume"}


def test_binance_minute_archive(tmp_path):
    path = tmp_path / "Crypto" / "ADABTC.csv"
    path.parent.mkdir()
    path.write_text(
        "1637971200000,0.00002853,0.00002854,0.00002851,0.00002854,36304.2,1637971259999,1.03547608,79,19523.0,"
        "0.55694227,0\n"
        "1637971260000,0.00002854,0.00002860,0.00002854,0.00002859,89196.6,1637971319999,2.5475133,98,59004.2,"
        "1.68545512,0\n"
    )
    reader, candles, _ = read(path)
    assert reader.meta.timeframe == "1m"
    assert candles[1].close == Decimal("0.00002859")


# ---------------------------------------------------------------- validation


def test_defects_rejected_with_line_and_reason(tmp_path):
    path = tmp_path / "NYSE" / "IBM.csv"
    path.parent.mkdir()
    path.write_text(
        "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"
        "IBM,2024-01-02,10,11,9,10.5,10.5,100\n"  # line 2 ok
        "IBM,2024-01-03,10,9,11,10,10,100\n"  # 3 high < low
        "IBM,2024-01-04,10,11,9,10,10,-5\n"  # 4 negative volume
        "IBM,2024-01-05,10,11,9,abc,10,100\n"  # 5 unparseable close
        "IBM,2024-01-06,12,11,9,10,10,100\n"  # 6 open above high
        "IBM,2024-01-07,10,11,9,8,10,100\n"  # 7 close below low
        "IBM,2024-01-08,-1,11,-2,10,10,100\n"  # 8 negative price
        "IBM,2024-13-09,10,11,9,10,10,100\n"  # 9 bad date
        "IBM,2024-01-10,10,11\n"  # 10 short row
        "IBM,2024-01-11,10,11,9,10,10,100\n"  # 11 ok
        "\n\n"
    )
    reader, candles, rejects = read(path)
    assert [c.line for c in candles] == [2, 11]
    reasons = {r.line: r.reason for r in rejects}
    assert reasons[3].startswith("high 9 < low 11")
    assert reasons[4] == "negative volume -5"
    assert reasons[5] == "unparseable KapanisFiyati: 'abc' is not a number"
    assert reasons[6].startswith("open 12 outside")
    assert reasons[7].startswith("close 8 outside")
    assert reasons[8] == "negative price"
    assert reasons[9].startswith("unparseable Tarih")
    assert reasons[10] == "expected 8 fields, found 4"
    assert rejects[0].raw == "IBM,2024-01-03,10,9,11,10,10,100"
    assert reader.rows_read == 10


def test_repeated_timestamp_breaks_monotonic(tmp_path):
    path = tmp_path / "NYSE" / "KO.csv"
    summary = samples.write_file(path, Layout.STANDARD, ticker="KO", rows=40, defect_every=7, seed=3)
    assert summary.defect_kinds.get("duplicate")
    reader, candles, rejects = read(path)
    assert not reader.monotonic
    assert len(candles) + len(rejects) == summary.rows
    assert len(rejects) == summary.defects - summary.defect_kinds["duplicate"]


def test_sample_folder_covers_every_layout(tmp_path):
    summary = samples.write_sample_folder(tmp_path, tickers=4, days=60, defect_every=20)
    layouts = set()
    for f in summary.files:
        reader, candles, rejects = read(f.path)
        layouts.add(reader.meta.layout)
        dup = f.defect_kinds.get("duplicate", 0)
        assert len(candles) + len(rejects) == f.rows
        assert len(rejects) == f.defects - dup, f.path
    assert layouts == set(Layout)


def test_reading_is_streaming(tmp_path):
    """Peak memory does not grow with the file: 20k and 80k rows need about the same."""

    def peak(rows: int) -> int:
        path = tmp_path / f"S{rows}.csv"
        samples.write_standard_rows(path, rows=rows)
        tracemalloc.start()
        for _ in CsvFileReader(path, market="CRYPTO"):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, big = peak(20_000), peak(80_000)
    assert big < small * 1.5 + 200_000


def test_two_identical_rows_are_not_monotonic(tmp_path):
    path = tmp_path / "NYSE" / "X.csv"
    path.parent.mkdir()
    row = "X,2024-01-02,10,11,9,10.5,10.5,100"
    header = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim"
    path.write_text("\n".join([header, row, row]) + "\n")
    reader, candles, _ = read(path)
    assert len(candles) == 2 and not reader.monotonic


# ---------------------------------------------------------------- setup kept per header


STANDARD = "HisseKodu,Tarih,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis,Hacim\n"
REORDERED = "Tarih,HisseKodu,Hacim,AcilisFiyati,EnYuksek,EnDusuk,KapanisFiyati,DuzeltilmisKapanis\n"


def test_files_sharing_a_header_share_its_layout_but_not_each_others_timeframe(tmp_path):
    """The layout and the row parser are kept per header; the timeframe (daily or intraday) is
    each file's own, also when an intraday file follows a daily one with the same header."""
    daily = tmp_path / "BIST" / "AAA.csv"
    daily.parent.mkdir()
    daily.write_text(STANDARD + "AAA,2024-01-02,10,11,9,10.5,10.5,100\nAAA,2024-01-03,10,11,9,10.5,10.5,100\n")
    intraday = tmp_path / "BIST" / "BBB.csv"
    intraday.write_text(
        STANDARD + "BBB,2024-01-02 10:00:00,10,11,9,10.5,10.5,100\nBBB,2024-01-02 11:00:00,10,11,9,10.5,10.5,100\n"
    )
    assert detect_layout(STANDARD) is detect_layout(STANDARD)  # kept
    first, first_rows, _ = read(daily, market="BIST")
    second, second_rows, _ = read(intraday, market="BIST")
    again, again_rows, _ = read(daily, market="BIST")
    assert (first.meta.timeframe, second.meta.timeframe, again.meta.timeframe) == ("1d", "1h", "1d")
    assert (
        [c.ts for c in first_rows]
        == [c.ts for c in again_rows]
        == [
            datetime(2024, 1, 2, tzinfo=UTC),
            datetime(2024, 1, 3, tzinfo=UTC),
        ]
    )
    # naive intraday stamps are Istanbul time (UTC+3): not taken as daily keys
    assert [c.ts for c in second_rows] == [datetime(2024, 1, 2, 7, tzinfo=UTC), datetime(2024, 1, 2, 8, tzinfo=UTC)]


def test_a_header_in_another_order_gets_its_own_column_positions(tmp_path):
    first = tmp_path / "BIST" / "AAA.csv"
    first.parent.mkdir()
    first.write_text(STANDARD + "AAA,2024-01-02,10,11,9,10.5,10.4,100\n")
    second = tmp_path / "BIST" / "BBB.csv"
    second.write_text(REORDERED + "2024-01-02,BBB,200,20,21,19,20.5,20.4\n")
    _, a, _ = read(first, market="BIST")
    _, b, _ = read(second, market="BIST")
    assert a[0][2:8] == (Decimal(10), Decimal(11), Decimal(9), Decimal("10.5"), Decimal(100), Decimal("10.4"))
    assert b[0][2:8] == (Decimal(20), Decimal(21), Decimal(19), Decimal("20.5"), Decimal(200), Decimal("20.4"))


def test_a_file_read_from_its_bytes_gives_what_reading_it_gives(tmp_path):
    """The import hands the parser the bytes its fingerprint read (a small file whole) rather
    than have it open the file again: the same rows, rejects (a NUL and an undecodable byte
    among them, whose raw text is read back from those bytes), meta and byte count."""
    path = tmp_path / "NYSE" / "KO.csv"
    samples.write_file(path, Layout.STANDARD, ticker="KO", rows=120, defect_every=9, seed=5)
    lines = (b"\xef\xbb\xbf" + path.read_bytes()).split(b"\n")  # with a byte-order mark
    lines[7] = lines[7].replace(b",", b",\x00", 1)
    lines[11] = lines[11] + b"\xff"
    path.write_bytes(b"\n".join(lines))
    data = path.read_bytes()
    from_file = CsvFileReader(path, market="NYSE")
    expected = list(from_file)
    path.unlink()  # read from memory: the file is not opened again
    from_bytes = CsvFileReader(path, market="NYSE", content=data)
    got = list(from_bytes)
    assert got == expected
    assert any(type(item) is Reject and "\\x00" in item.raw for item in got)
    assert any(type(item) is Reject and "\\xff" in item.raw for item in got)
    assert (from_bytes.meta, from_bytes.rows_read, from_bytes.bytes_read, from_bytes.monotonic) == (
        from_file.meta,
        from_file.rows_read,
        from_file.bytes_read,
        from_file.monotonic,
    )
