"""One bad line costs one line: NUL bytes, undecodable bytes, over-long fields,
implausible dates and negative adjusted closes reject that line only."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from batchimport.parsing import Candle, CsvFileReader, Reject, plausible_dates, validate

HEADER = b"Date,Open,High,Low,Close,Adj Close,Volume\n"


def good_rows(count: int, *, start_day: int = 0) -> list[bytes]:
    rows = []
    for n in range(start_day, start_day + count):
        day = datetime(2020, 1, 1, tzinfo=UTC).toordinal() + n
        stamp = datetime.fromordinal(day).strftime("%Y-%m-%d")
        rows.append(f"{stamp},10,11,9,10.5,10.4,{1000 + n}\n".encode())
    return rows


def read(path) -> tuple[list[Candle], list[Reject]]:
    items = list(CsvFileReader(path, market="NYSE"))
    return [i for i in items if type(i) is Candle], [i for i in items if type(i) is Reject]


def test_an_undecodable_byte_rejects_its_line_with_the_true_byte_offset(tmp_path):
    rows = good_rows(2000)
    bad_line_number = 1002  # physical line: the header is line 1
    bad = rows[bad_line_number - 2]
    rows[bad_line_number - 2] = bad[:11] + b"\xff" + bad[11:]
    path = tmp_path / "NYSE" / "KO.csv"
    path.parent.mkdir()
    path.write_bytes(HEADER + b"".join(rows))
    offset = len(HEADER) + sum(len(r) for r in rows[: bad_line_number - 2]) + 11

    candles, rejects = read(path)

    assert len(candles) == 1999
    assert [(r.line, r.reason) for r in rejects] == [
        (bad_line_number, f"not UTF-8 text at byte {offset} (invalid start byte)")
    ]
    assert "\\xff" in rejects[0].raw


def test_a_nul_byte_rejects_its_line_and_the_raw_text_is_storable(tmp_path):
    rows = good_rows(20)
    rows[4] = rows[4].replace(b",10,", b",1\x000,", 1)
    path = tmp_path / "KO.csv"
    path.write_bytes(HEADER + b"".join(rows))
    candles, rejects = read(path)
    assert len(candles) == 19
    assert len(rejects) == 1
    assert rejects[0].line == 6
    assert rejects[0].reason.startswith("NUL byte at byte ")
    assert "\x00" not in rejects[0].raw and "\\x00" in rejects[0].raw


def test_a_quoted_field_past_the_csv_limit_rejects_its_line(tmp_path):
    rows = good_rows(10)
    huge = b'"' + b"9" * (csv.field_size_limit() + 10) + b'"'
    rows[3] = b"2020-01-04,10,11,9," + huge + b",10.4,1000\n"
    path = tmp_path / "KO.csv"
    path.write_bytes(HEADER + b"".join(rows))
    candles, rejects = read(path)
    assert len(candles) == 9
    assert [r.line for r in rejects] == [5]
    assert "field larger than field limit" in rejects[0].reason
    assert len(rejects[0].raw) <= 10_000


@pytest.mark.parametrize("year", [1, 1900, 2099, 9999])
def test_implausible_dates_are_rejected(tmp_path, year):
    rows = good_rows(10)
    rows[5] = f"{year:04d}-06-01,10,11,9,10.5,10.4,1000\n".encode()
    path = tmp_path / "KO.csv"
    path.write_bytes(HEADER + b"".join(rows))
    candles, rejects = read(path)
    assert len(candles) == 9
    assert [(r.line, r.field) for r in rejects] == [(7, "date")]
    assert "outside the plausible range 1970-01-01" in rejects[0].reason


def test_an_aware_stamp_near_year_one_is_rejected_not_raised(tmp_path):
    path = tmp_path / "KO.csv"
    path.write_bytes(
        b"Datetime,Open,High,Low,Close,Volume\n"
        b"2024-01-02 10:00:00+00:00,1,1,1,1,1\n"
        b"0001-01-01 00:00:00+05:00,1,1,1,1,1\n"
        b"2024-01-02 11:00:00+00:00,1,1,1,1,1\n"
    )
    candles, rejects = read(path)
    assert len(candles) == 2
    assert [r.line for r in rejects] == [3]


def test_the_range_is_configurable(settings, tmp_path):
    settings.IMPORT_EARLIEST_DATE = "1800-01-01"
    settings.IMPORT_DAYS_AHEAD = 365 * 200
    rows = good_rows(3)
    rows[1] = b"1900-06-01,10,11,9,10.5,10.4,1000\n"
    path = tmp_path / "KO.csv"
    path.write_bytes(HEADER + b"".join(rows))
    candles, rejects = read(path)
    assert (len(candles), rejects) == (3, [])
    dates = plausible_dates(now=datetime(2024, 1, 1, tzinfo=UTC))
    assert dates.earliest == datetime(1800, 1, 1, tzinfo=UTC)
    assert dates.latest == datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=365 * 200)


def test_default_range_is_1970_to_one_day_ahead():
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    dates = plausible_dates(now=now)
    assert dates.earliest == datetime(1970, 1, 1, tzinfo=UTC)
    assert dates.latest == datetime(2024, 5, 2, 12, tzinfo=UTC)


def test_a_negative_adjusted_close_is_rejected(tmp_path):
    rows = good_rows(10)
    rows[2] = b"2020-01-03,10,11,9,10.5,-0.4,1000\n"
    path = tmp_path / "KO.csv"
    path.write_bytes(HEADER + b"".join(rows))
    candles, rejects = read(path)
    assert len(candles) == 9
    assert [(r.line, r.reason) for r in rejects] == [(4, "negative adjusted close -0.4")]


def test_validate_names_a_negative_adjusted_close():
    one = Decimal(1)
    assert validate(one, one, one, one, one, adj=Decimal("-1")) == "negative adjusted close -1"
    assert validate(one, one, one, one, one, adj=one) is None
