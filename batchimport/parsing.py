"""Reading the scraper's CSV files: layout detection, field parsing, validation.

Pure Python, no ORM, streaming: a file is read line by line and every data row
comes out either as a `Candle` (ready for COPY) or a `Reject` (line, raw text,
reason). Memory does not grow with the file: only a small look-ahead buffer is
kept to tell the timeframe from the data.

Time rules (see docs/import.md):
- daily and longer bars are keyed by their trading date at 00:00 UTC (an
  aware stamp such as yfinance's `2022-01-03 00:00:00-05:00` keeps its local
  date), so the same day from two sources lands on the same key;
- intraday bars are converted to UTC exactly; naive intraday stamps are read
  in the market's time zone (`tz`), epoch stamps are UTC already.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path, PosixPath
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings

from batchimport.markets import market_named


class Layout(StrEnum):
    BIST_DETAILED = "bist_detailed"
    STANDARD = "standard"
    YAHOO = "yahoo"
    BINANCE = "binance"
    INVESTING_TR = "investing_tr"


class FileFormatError(ValueError):
    """The file as a whole cannot be read (empty, not UTF-8, unknown layout).
    Retrying does not help: the import sends it to the dead-letter list."""


class Candle(NamedTuple):
    """One valid row, in the staging table's column order. Numbers are text
    (exact; cast to numeric by PostgreSQL)."""

    line: int
    ts: datetime
    open: str
    high: str
    low: str
    close: str
    volume: str
    adj_close: str | None
    extra: dict | None


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    raw: str
    reason: str
    field: str = ""


_TICKER_SUFFIXES = ("_historical", "_hist", "_daily", "_data")

BIST_DETAILED_MARKERS = {"HGDG_HS_KODU", "END_ENDEKS_KODU", "DD_DOVIZ_KODU", "SERMAYE"}
STANDARD_HEADER = [
    "HisseKodu",
    "Tarih",
    "AcilisFiyati",
    "EnYuksek",
    "EnDusuk",
    "KapanisFiyati",
    "DuzeltilmisKapanis",
    "Hacim",
]
BINANCE_COLUMNS = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
    "ignore",
]
INVESTING_HEADER = ["Tarih", "Şimdi", "Açılış", "Yüksek", "Düşük", "Hac.", "Fark %"]

# BIST detailed columns kept in market_data.extra (source column -> key).
BIST_EXTRA = {
    "DuzeltilmisKapanis": "close_adj",
    "AcilisFiyati": "vwap_adj",
    "EnDusuk": "low_adj",
    "EnYuksek": "high_adj",
    "DOLAR_BAZLI_FIYAT": "close_usd",
    "DOLAR_HACIM": "turnover_usd",
    "SERMAYE": "paid_in_capital_try",
    "PD": "market_cap_try",
    "PD_USD": "market_cap_usd",
    "HAO_PD": "free_float_market_cap_try",
    "HAO_PD_USD": "free_float_market_cap_usd",
    "DD_DEGER": "usdtry",
    "END_DEGER": "xu100",
}

TIMEFRAMES = [
    (60, "1m"),
    (180, "3m"),
    (300, "5m"),
    (900, "15m"),
    (1800, "30m"),
    (3600, "1h"),
    (7200, "2h"),
    (14400, "4h"),
    (21600, "6h"),
    (43200, "12h"),
]
INTRADAY_LIMIT = 20 * 3600  # a smallest gap of 20 h or more is daily (DST gives 23 h)


def ticker_from_filename(name: str) -> str:
    """`AGROT_historical.csv` -> `AGROT`: upper-cased stem without the scraper's suffixes."""
    base = os.path.basename(os.path.normpath(name)) if os.sep in name else name
    dot = base.rfind(".")
    stem = base[:dot] if 0 < dot < len(base) - 1 else base  # Path(name).stem, without building a Path
    lowered = stem.lower()
    for suffix in _TICKER_SUFFIXES:
        if lowered.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem.strip().upper()


def market_from_path(path: str | os.PathLike) -> str | None:
    """The market key from the nearest folder named after a market (BIST, Crypto, ...)."""
    for part in reversed(Path(path).parts[:-1]):
        spec = market_named(part)
        if spec:
            return spec.key
    return None


# ---------------------------------------------------------------- numbers

_SUFFIXES = {"K": Decimal(1_000), "M": Decimal(1_000_000), "B": Decimal(1_000_000_000)}
_EN_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")


class FieldError(ValueError):
    pass


def _finite(value: Decimal, text: str) -> Decimal:
    if not value.is_finite():
        raise FieldError(f"{text!r} is not a finite number")
    return value


def parse_number(text: str) -> Decimal:
    """A number as English-style exports write it: `4.56E9`, `1,234.5`, `4006500.0`."""
    try:
        return _finite(Decimal(text), text)
    except InvalidOperation:
        pass
    s = text.strip().replace(" ", "")
    if not s:
        raise FieldError("empty")
    if _EN_THOUSANDS.match(s):
        s = s.replace(",", "")
    elif "," in s and "." in s:
        # both separators: the last one is the decimal point
        s = s.replace(",", "") if s.rfind(".") > s.rfind(",") else s.replace(".", "").replace(",", ".")
    elif "," in s:
        s = s.replace(",", ".")
    try:
        return _finite(Decimal(s), text)
    except InvalidOperation:
        raise FieldError(f"{text!r} is not a number") from None


def parse_number_tr(text: str) -> Decimal:
    """A number as the Turkish investing.com export writes it: `.` groups thousands,
    `,` is the decimal point, `K/M/B` multiply, a trailing `%` is dropped:
    `12,410` -> 12.41, `1.234,5` -> 1234.5, `94,52M` -> 94520000, `1,64%` -> 1.64."""
    s = text.strip().replace(" ", "")
    if not s:
        raise FieldError("empty")
    if s == "-":
        raise FieldError("'-' (no value)")
    factor = None
    if s[-1] == "%":
        s = s[:-1]
    elif s[-1].upper() in _SUFFIXES:
        factor = _SUFFIXES[s[-1].upper()]
        s = s[:-1]
    s = s.replace(".", "").replace(",", ".")
    try:
        value = _finite(Decimal(s), text)
    except InvalidOperation:
        raise FieldError(f"{text!r} is not a number") from None
    return value * factor if factor is not None else value


def _float_or_none(text: str) -> float | None:
    if not text or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            value = float(parse_number(text))
        except FieldError:
            return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


# ---------------------------------------------------------------- timestamps


def parse_timestamp(text: str) -> datetime:
    """ISO (`2024-01-03`, `2022-01-03 00:00:00-05:00`, `...Z`), `dd-mm-yyyy`,
    `dd.mm.yyyy`, `dd/mm/yyyy`, or epoch seconds/ms/µs (10/13/16 digits).
    Returns a naive datetime (local) or an aware one (the text carried an offset)."""
    s = text.strip()
    if not s:
        raise FieldError("empty")
    if s.isdigit():
        n = len(s)
        if n == 13:
            return datetime.fromtimestamp(int(s) / 1000, UTC)
        if n == 16:
            value = int(s)
            return datetime.fromtimestamp(value // 1_000_000, UTC).replace(microsecond=value % 1_000_000)
        if n == 10:
            return datetime.fromtimestamp(int(s), UTC)
        raise FieldError(f"{text!r} is not a date (epoch with {n} digits)")
    try:
        if len(s) >= 10 and s[2] in "-./" and s[5] == s[2]:
            date_part, _, time_part = s.partition(" ")
            base = datetime(int(date_part[6:10]), int(date_part[3:5]), int(date_part[0:2]))
            if time_part:
                t = datetime.strptime(time_part[:8], "%H:%M:%S" if time_part.count(":") == 2 else "%H:%M")
                base = base.replace(hour=t.hour, minute=t.minute, second=t.second)
            return base
        return datetime.fromisoformat(s)
    except ValueError:
        raise FieldError(f"{text!r} is not a date") from None


_fromiso = datetime.fromisoformat


def timeframe_from_gaps(stamps: list[datetime]) -> str | None:
    """The bar size from the smallest gap between distinct timestamps, or None
    when there are fewer than two."""
    ordered = sorted(set(stamps))
    gaps = [(b - a).total_seconds() for a, b in zip(ordered, ordered[1:], strict=False)]
    gaps = [g for g in gaps if g > 0]
    if not gaps:
        return None
    gap = min(gaps)
    if gap >= 27 * 86400:
        return "1mo"
    if gap >= 6 * 86400:
        return "1w"
    if gap >= INTRADAY_LIMIT:
        return "1d"
    for seconds, label in TIMEFRAMES:
        if gap <= seconds * 1.05:
            return label if gap >= seconds * 0.95 else f"{int(gap // 60)}m" if gap >= 60 else f"{int(gap)}s"
    return f"{int(gap // 3600)}h"


def is_daily(timeframe: str) -> bool:
    return timeframe in ("1d", "1w", "1mo")


# ---------------------------------------------------------------- layouts


@dataclass(frozen=True, slots=True)
class LayoutSpec:
    layout: Layout
    has_header: bool
    delimiter: str
    columns: tuple[str, ...]
    skip_index: bool = False


def _norm(name: str) -> str:
    return name.strip().strip('"').strip("\ufeff").strip()


def detect_layout(first_line: str) -> LayoutSpec:
    """The layout from the first line of the file (header, or first data row for
    header-less Binance archives). The files of a folder share a few headers: each
    distinct first line is read once (a header-less Binance file's first line is a
    row, different in every file, so those are not kept)."""
    spec = _LAYOUTS.get(first_line)
    if spec is None:
        spec = _detect_layout(first_line)
        if spec.has_header and len(_LAYOUTS) < _LAYOUTS_KEPT:
            _LAYOUTS[first_line] = spec
    return spec


_LAYOUTS: dict[str, LayoutSpec] = {}
_LAYOUTS_KEPT = 256


def _detect_layout(first_line: str) -> LayoutSpec:
    line = first_line.lstrip("\ufeff").rstrip("\r\n")
    if not line.strip():
        raise FileFormatError("the first line is empty: no header")
    delimiter = ";" if line.count(";") > line.count(",") else ","
    fields = [_norm(f) for f in next(csv.reader([line], delimiter=delimiter))]
    upper = {f.upper() for f in fields}
    if upper & BIST_DETAILED_MARKERS:
        return LayoutSpec(Layout.BIST_DETAILED, True, delimiter, tuple(fields))
    if fields[:1] == ["Tarih"] and "Şimdi" in fields:
        return LayoutSpec(Layout.INVESTING_TR, True, delimiter, tuple(fields))
    if {"HisseKodu", "Tarih", "KapanisFiyati"} <= set(fields):
        return LayoutSpec(Layout.STANDARD, True, delimiter, tuple(fields))
    lowered = [f.lower() for f in fields]
    skip_index = bool(lowered) and lowered[0] in ("", "unnamed: 0", "index")
    names = lowered[1:] if skip_index else lowered
    if names[:1] in (["date"], ["datetime"]) and {"open", "high", "low", "close"} <= set(names):
        return LayoutSpec(Layout.YAHOO, True, delimiter, tuple(names), skip_index)
    if names[:1] == ["open_time"]:
        return LayoutSpec(Layout.BINANCE, True, delimiter, tuple(names), skip_index)
    if len(fields) == 12 and fields[0].isdigit() and len(fields[0]) in (10, 13, 16):
        return LayoutSpec(Layout.BINANCE, False, delimiter, tuple(BINANCE_COLUMNS))
    raise FileFormatError(
        f"unknown layout: header {line[:120]!r} matches none of BIST detailed, STANDARD, "
        "Yahoo/yfinance, Binance klines, investing.com"
    )


# Each row parser takes the fields and returns (ts, o, h, l, c, v, adj, extra);
# it raises FieldError naming the field.


def _field(fields: list[str], index: int, name: str, parse=parse_number) -> Decimal:
    try:
        return parse(fields[index])
    except FieldError as exc:
        raise FieldError(f"{name}: {exc}") from None


_PARSERS: dict[LayoutSpec, dict] = {}


class _RowParser:
    """Column positions resolved once per layout spec; `__call__` is the hot path."""

    def __init__(self, spec: LayoutSpec):
        resolved = _PARSERS.get(spec)
        if resolved is None:
            self._resolve(spec)
            if len(_PARSERS) < _LAYOUTS_KEPT:
                _PARSERS[spec] = dict(self.__dict__)
        else:
            self.__dict__.update(resolved)
        # set once the timeframe is known (see CsvFileReader._read)
        self.daily = False
        self.utc_naive = False

    def _resolve(self, spec: LayoutSpec) -> None:
        """The column positions and parse functions of a layout and header (kept per spec:
        a folder of one-row files would otherwise spend most of its parse time here)."""
        self.spec = spec
        cols = list(spec.columns)
        self.width = len(cols) + (1 if spec.skip_index else 0)
        off = 1 if spec.skip_index else 0

        def pos(*names: str, required: bool = True) -> int | None:
            for name in names:
                for i, col in enumerate(cols):
                    if col == name or col.lower() == name.lower():
                        return i + off
            if required:
                raise FileFormatError(f"{spec.layout} header lacks column {names[0]!r}")
            return None

        layout = spec.layout
        self.number = parse_number_tr if layout == Layout.INVESTING_TR else parse_number
        if layout == Layout.BIST_DETAILED:
            # See docs/import.md: unadjusted traded prices as OHLC, the weighted
            # average price as an approximate open, turnover (TRY) as volume.
            self.names = ("Tarih", "HG_AOF", "HG_MAX", "HG_MIN", "HG_KAPANIS", "HG_HACIM", "DuzeltilmisKapanis")
            self.extra_cols = [
                (p, key) for col, key in BIST_EXTRA.items() if (p := pos(col, required=False)) is not None
            ]
        elif layout == Layout.STANDARD:
            self.names = (
                "Tarih",
                "AcilisFiyati",
                "EnYuksek",
                "EnDusuk",
                "KapanisFiyati",
                "Hacim",
                "DuzeltilmisKapanis",
            )
            self.extra_cols = []
        elif layout == Layout.YAHOO:
            date_col = "datetime" if "datetime" in cols else "date"
            self.names = (date_col, "open", "high", "low", "close", "volume", "adj close")
            self.extra_cols = [
                (p, key)
                for col, key in (("dividends", "dividends"), ("stock splits", "stock_splits"))
                if (p := pos(col, required=False)) is not None
            ]
        elif layout == Layout.BINANCE:
            self.names = ("open_time", "open", "high", "low", "close", "volume", None)
            self.extra_cols = [
                (p, key)
                for col, key in (
                    ("quote_volume", "quote_volume"),
                    ("count", "trades"),
                    ("taker_buy_base_volume", "taker_buy_base_volume"),
                    ("taker_buy_quote_volume", "taker_buy_quote_volume"),
                )
                if (p := pos(col, required=False)) is not None
            ]
        else:  # investing.com
            self.names = ("Tarih", "Açılış", "Yüksek", "Düşük", "Şimdi", "Hac.", None)
            self.extra_cols = [(p, "change_pct") for p in [pos("Fark %", required=False)] if p is not None]
        self.positions = [pos(n) if n else None for n in self.names[:6]]
        self.adj_pos = pos(self.names[6], required=False) if self.names[6] else None
        self.is_bist = layout == Layout.BIST_DETAILED
        self.is_investing = layout == Layout.INVESTING_TR
        self.drop_zero_extra = layout == Layout.YAHOO

    def extra(self, fields: list[str]) -> dict | None:
        extra = {}
        if self.is_investing:
            for i, key in self.extra_cols:
                try:
                    extra[key] = float(parse_number_tr(fields[i]))
                except FieldError:
                    pass
        else:
            for i, key in self.extra_cols:
                value = _float_or_none(fields[i])
                if value is not None and not (self.drop_zero_extra and value == 0):
                    extra[key] = value
        if self.is_bist:
            extra["open_is_vwap"] = True
            extra["volume_unit"] = "TRY"
        return extra or None

    def fast(self, fields: list[str]):
        """The common case at C speed: plain numbers and an ISO or epoch date
        that pass validation. Returns the row with the numbers as their
        original text (PostgreSQL casts them exactly), or None when the row
        needs the careful path, which also explains a rejection."""
        p0, p1, p2, p3, p4, p5 = self.positions
        o_s, h_s, l_s, c_s, v_s = fields[p1], fields[p2], fields[p3], fields[p4], fields[p5]
        try:
            o, h, lo, c, v = float(o_s), float(h_s), float(l_s), float(c_s), float(v_s)
            ts_s = fields[p0]
            # Build the final UTC stamp in one C call where the text allows it
            # (datetime.replace/astimezone cost several times more per row).
            if ts_s.isdigit():
                ts = parse_timestamp(ts_s)
            elif self.daily and ts_s[4:5] == "-":
                ts = _fromiso(ts_s[:10] + "T00:00:00+00:00")  # the date as written, at 00:00 UTC
            elif self.utc_naive and len(ts_s) == 19:
                ts = _fromiso(ts_s + "+00:00")
            else:
                ts = _fromiso(ts_s)
        except (ValueError, FieldError):
            return None
        total = o + h + lo + c + v
        if total - total != 0:  # nan or inf somewhere
            return None
        if not (0 <= lo <= o <= h < PRICE_LIMIT and lo <= c <= h and 0 <= v < VOLUME_LIMIT):
            return None
        adj_s = None
        if self.adj_pos is not None:
            adj_s = fields[self.adj_pos]
            if adj_s.strip():
                try:
                    a = float(adj_s)
                except ValueError:
                    return None
                if a - a != 0 or not 0 <= a < PRICE_LIMIT:
                    return None
            else:
                adj_s = None
        return ts, o_s, h_s, l_s, c_s, v_s, adj_s, self.extra(fields) if self.extra_cols else None

    def __call__(self, fields: list[str]):
        """The careful path: every field through the layout's number rules,
        errors naming the column. Numbers come back as normalised text."""
        p = self.positions
        names = self.names
        try:
            ts = parse_timestamp(fields[p[0]])
        except FieldError as exc:
            raise FieldError(f"{names[0]}: {exc}") from None
        number = self.number
        o = _field(fields, p[1], names[1], number)
        h = _field(fields, p[2], names[2], number)
        lo = _field(fields, p[3], names[3], number)
        c = _field(fields, p[4], names[4], number)
        v = _field(fields, p[5], names[5], number)
        adj = None
        if self.adj_pos is not None and fields[self.adj_pos].strip():
            adj = _field(fields, self.adj_pos, names[6], number)
        return ts, o, h, lo, c, v, adj, self.extra(fields) if self.extra_cols else None


# numeric(28, 10) holds 18 integer digits, numeric(30, 8) 22
PRICE_LIMIT = 1e18
VOLUME_LIMIT = 1e22


def validate(o: Decimal, h: Decimal, lo: Decimal, c: Decimal, v: Decimal, *, adj: Decimal | None = None) -> str | None:
    """The reason a candle is impossible, or None."""
    if o < 0 or h < 0 or lo < 0 or c < 0:
        return "negative price"
    if adj is not None and adj < 0:
        return f"negative adjusted close {adj}"
    if adj is not None and adj >= PRICE_LIMIT:
        return "value too large (prices below 10^18, volume below 10^22)"
    if v < 0:
        return f"negative volume {v}"
    if max(o, h, lo, c) >= PRICE_LIMIT or v >= VOLUME_LIMIT:
        return "value too large (prices below 10^18, volume below 10^22)"
    if h < lo:
        return f"high {h} < low {lo}"
    if not lo <= o <= h:
        return f"open {o} outside [low {lo}, high {h}]"
    if not lo <= c <= h:
        return f"close {c} outside [low {lo}, high {h}]"
    return None


# ---------------------------------------------------------------- plausible dates


@dataclass(frozen=True, slots=True)
class DateRange:
    """The candle dates an import accepts (both ends included); rows outside are rejected."""

    earliest: datetime
    latest: datetime

    def refusal(self, ts: datetime) -> str:
        return f"date {ts:%Y-%m-%d} outside the plausible range {self.earliest:%Y-%m-%d} to {self.latest:%Y-%m-%d}"


DEFAULT_EARLIEST_DATE = "1970-01-01"
DEFAULT_DAYS_AHEAD = 1


def plausible_dates(*, now: datetime | None = None) -> DateRange:
    """The range from the settings' input limits (`IMPORT_EARLIEST_DATE`,
    `IMPORT_DAYS_AHEAD`): by default 1970-01-01 to one day ahead of now."""
    configured = settings.configured
    earliest_text = getattr(settings, "IMPORT_EARLIEST_DATE", None) if configured else None
    days_ahead = getattr(settings, "IMPORT_DAYS_AHEAD", None) if configured else None
    earliest = date.fromisoformat(str(earliest_text or DEFAULT_EARLIEST_DATE))
    ahead = DEFAULT_DAYS_AHEAD if days_ahead is None else int(days_ahead)
    latest = (now or datetime.now(UTC)) + timedelta(days=ahead)
    return DateRange(earliest=datetime(earliest.year, earliest.month, earliest.day, tzinfo=UTC), latest=latest)


# ---------------------------------------------------------------- unreadable lines

# Undecodable bytes are read as NUL, the one character no CSV row of ours may
# hold: the hot loop then needs a single `in` test per line to find both faults,
# and the line's own bytes are read again (rarely) to tell which and where.
_UNREADABLE = "\x00"
_MARK_ERRORS = "batchimport.mark_unreadable"


def _mark_unreadable(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return _UNREADABLE, exc.end


codecs.register_error(_MARK_ERRORS, _mark_unreadable)


_NEVER = datetime(1, 1, 1, tzinfo=UTC)  # a stamp no range admits


class _RawLines:
    """The file's bytes line by line, read forward on demand: the raw text and
    the true byte offset of a line that held a NUL or an undecodable byte."""

    def __init__(self, path: Path, content: bytes | None = None):
        self.path = path
        self.content = content
        self._handle = None
        self.number = 0
        self.offset = 0

    def line(self, number: int) -> tuple[int, bytes]:
        """(offset of the line's first byte, the line's bytes) of physical line `number`."""
        if self._handle is None or number <= self.number:
            self.close()
            self._handle = open(self.path, "rb") if self.content is None else io.BytesIO(self.content)  # noqa: SIM115
            self.number = self.offset = 0
        start, raw = self.offset, b""
        while self.number < number:
            start = self.offset
            raw = self._handle.readline()
            if not raw:
                break
            self.number += 1
            self.offset += len(raw)
        return start, raw

    def fault(self, number: int) -> tuple[str, str]:
        """(the line as printable text, what is wrong with it and at which byte of the file)."""
        offset, raw = self.line(number)
        body = raw.rstrip(b"\r\n")
        text = body.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return text, f"not UTF-8 text at byte {offset + exc.start} ({exc.reason})"
        at = body.find(b"\x00")
        if at < 0:  # the file's line breaks are not plain \n: the offset is unknown
            return text, "a NUL byte or text that is not UTF-8"
        return text, f"NUL byte at byte {offset + at}"

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


# ---------------------------------------------------------------- reading a file


@dataclass(frozen=True, slots=True)
class FileMeta:
    layout: Layout
    ticker: str
    market: str | None
    timeframe: str


class _TimeKeeper:
    """Turns parsed stamps into final UTC keys and watches the file's order:
    `monotonic` stays True while timestamps only ever move one way."""

    __slots__ = ("daily", "local_zone", "previous", "direction", "monotonic")

    def __init__(self, *, daily: bool, tz: ZoneInfo):
        self.daily = daily
        self.local_zone = tz if str(tz) not in ("UTC", "Etc/UTC") else None
        self.previous: datetime | None = None
        self.direction = 0
        self.monotonic = True

    def final(self, ts: datetime) -> datetime:
        daily = self.daily
        if ts.tzinfo is UTC and not (daily and (ts.hour or ts.minute or ts.second or ts.microsecond)):
            return ts  # already final (the fast path builds it so)
        if daily:
            return datetime(ts.year, ts.month, ts.day, 0, 0, 0, 0, UTC)
        if ts.tzinfo is None:
            if self.local_zone is None:
                return datetime(ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.microsecond, UTC)
            return ts.replace(tzinfo=self.local_zone).astimezone(UTC)
        return ts.astimezone(UTC)

    def order(self, ts: datetime) -> None:
        if not self.monotonic:
            return  # once broken, the order no longer matters
        previous = self.previous
        if previous is not None:
            step = 1 if ts > previous else -1 if ts < previous else 0
            if step == 0 or (self.direction and step != self.direction):
                self.monotonic = False
            self.direction = self.direction or step
        self.previous = ts


def _splitter(delimiter: str):
    def split(text: str) -> list[str]:
        # plain lines are split directly; quoted ones go through csv (one line each:
        # no layout we read puts line breaks inside a field). csv.Error (a field
        # past csv's size limit, say) is the caller's to turn into a reject.
        if '"' in text:
            return next(csv.reader([text], delimiter=delimiter))
        return text.rstrip("\r\n").split(delimiter)

    return split


class CsvFileReader:
    """Iterate a file as `Candle`/`Reject` items, streaming.

    `meta` is set once the first rows have been read; `bytes_read` grows as
    the file is consumed (for progress); `monotonic` stays True while
    timestamps only ever move one way (then no row can repeat an earlier one
    and the loader skips its duplicate check). `content`: the file's bytes when
    the caller has read them already (the import's fingerprint reads a small
    file whole): read from memory, as the file would be, without opening it again.

    Candle prices and volume are text: the original number when it is plain,
    else the normalised value (`12,410` -> `12.410` in the Turkish export);
    PostgreSQL casts them to numeric exactly.
    """

    LOOKAHEAD = 64

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        tz: str | None = None,
        market: str | None = None,
        ticker: str | None = None,
        timeframe: str | None = None,
        dates: DateRange | None = None,
        content: bytes | None = None,
    ):
        self.path = path if type(path) is PosixPath else Path(path)
        self.dates = dates or plausible_dates()
        self.market = market or market_from_path(self.path)
        self.ticker = ticker or ticker_from_filename(self.path.name)
        spec = market_named(self.market or "")
        self.tz = ZoneInfo(tz or (spec.timezone if spec else "UTC"))
        self.timeframe = timeframe
        self.meta: FileMeta | None = None
        self.rows_read = 0
        self._keeper: _TimeKeeper | None = None
        self._handle = None
        self._bytes_done = 0
        self._content = content
        self._raw = _RawLines(self.path, content)

    @property
    def monotonic(self) -> bool:
        return self._keeper is None or self._keeper.monotonic

    @property
    def bytes_read(self) -> int:
        """Bytes consumed so far (to the read-ahead block while reading)."""
        if self._handle is not None and not self._handle.closed:
            return self._handle.buffer.tell()
        return self._bytes_done

    def __iter__(self) -> Iterator[Candle | Reject]:
        handle = self._open()
        self._handle = handle
        with handle:
            try:
                yield from self._read(handle)
            finally:
                self._raw.close()
            self._bytes_done = handle.buffer.tell()

    def _open(self):
        if self._content is not None:
            return io.TextIOWrapper(io.BytesIO(self._content), encoding="utf-8-sig", errors=_MARK_ERRORS, newline="")
        try:
            return open(self.path, encoding="utf-8-sig", errors=_MARK_ERRORS, newline="")  # noqa: SIM115
        except FileNotFoundError:
            raise  # not the file's fault: the import retries it (the share may be missing on this host)
        except OSError as exc:
            raise FileFormatError(f"cannot open {self.path}: {exc.strerror or exc}") from exc

    def _read(self, handle) -> Iterator[Candle | Reject]:
        """Detect the layout, look ahead to learn the timeframe, then stream."""
        spec, lines, number = self._open_layout(handle)
        parser = _RowParser(spec)
        split = _splitter(spec.delimiter)
        pending, number = self._lookahead(lines, number, parser, split)
        keeper = self._settle(spec, parser, pending)
        for item in pending:
            yield self._finalised(item, keeper, parser)
        pending.clear()
        yield from self._stream(lines, number, parser, keeper, split)

    def _open_layout(self, handle) -> tuple[LayoutSpec, Iterator[str], int]:
        """The layout from the first non-blank line, the lines still to read
        and the number of the line before the first data row."""
        lines: Iterator[str] = handle
        first = next(lines, None)
        skipped = 1
        while first is not None and not first.strip():
            first = next(lines, None)
            skipped += 1
        if first is None:
            raise FileFormatError(f"{self.path.name}: the file is empty")
        if _UNREADABLE in first:
            raise FileFormatError(f"{self.path.name}: line {skipped} (the header): {self._raw.fault(skipped)[1]}")
        spec = detect_layout(first)
        if spec.has_header:
            return spec, lines, skipped
        return spec, _chain_first(first, lines), skipped - 1

    def _lookahead(self, lines: Iterator[str], number: int, parser: _RowParser, split) -> tuple[list, int]:
        """The first rows (up to LOOKAHEAD timestamps), parsed but not final yet.
        Plain rows take the fast path here too (its stamp is not final yet, as the
        careful path's is not): in a file of a few hundred rows the look-ahead is a
        quarter of them."""
        pending: list = []
        stamps = 0
        fast = None if parser.spec.layout == Layout.INVESTING_TR else parser.fast
        delimiter, width = parser.spec.delimiter, parser.width
        for text in lines:
            number += 1
            item = None
            if fast is not None and '"' not in text and _UNREADABLE not in text:
                fields = text.rstrip("\r\n").split(delimiter)
                parsed = fast(fields) if len(fields) == width else None
                if parsed is not None:
                    self.rows_read += 1
                    item = (number, *parsed, delimiter.join(fields))
            if item is None:
                item = self._careful(text, number, parser, split)
            if item is None:
                continue
            pending.append(item)
            if type(item) is tuple:
                stamps += 1
                if stamps >= self.LOOKAHEAD:
                    break
        return pending, number

    def _settle(self, spec: LayoutSpec, parser: _RowParser, pending: list) -> _TimeKeeper:
        """The timeframe is known now: set `meta` and tune the parser's fast path."""
        stamps = [item[1] for item in pending if type(item) is tuple]
        timeframe = self.timeframe or self._timeframe(stamps)
        self.meta = FileMeta(layout=spec.layout, ticker=self.ticker, market=self.market, timeframe=timeframe)
        keeper = _TimeKeeper(daily=is_daily(timeframe), tz=self.tz)
        parser.daily, parser.utc_naive = keeper.daily, keeper.local_zone is None
        self._keeper = keeper
        return keeper

    def _finalised(self, item, keeper: _TimeKeeper, parser: _RowParser):
        """A careful-path item with its final stamp (a Reject as it is), or a
        Reject when that stamp is outside the plausible dates."""
        if type(item) is not tuple:
            return item
        line, raw = item[0], item[9]
        try:
            ts = keeper.final(item[1])
        except (OverflowError, ValueError):
            return Reject(line, raw, "date out of range", parser.names[0])
        dates = self.dates
        if not dates.earliest <= ts <= dates.latest:
            return Reject(line, raw, dates.refusal(ts), parser.names[0])
        keeper.order(ts)
        return tuple.__new__(Candle, (line, ts, *item[2:9]))

    def _careful(self, text: str, number: int, parser: _RowParser, split):
        """A line the hot path did not take: split it and parse it field by field,
        or a Reject when it cannot even be split (NUL, undecodable byte, csv error)."""
        if _UNREADABLE in text:
            self.rows_read += 1
            raw, reason = self._raw.fault(number)
            return Reject(number, raw, reason)
        try:
            fields = split(text)
        except csv.Error as exc:
            self.rows_read += 1
            return Reject(number, text.rstrip("\r\n")[:10_000], f"unreadable row: {exc}")
        return self._parse(fields, number, parser)

    def _stream(self, lines: Iterator[str], number: int, parser: _RowParser, keeper: _TimeKeeper, split):
        """The rest of the file: the hot path for well-formed rows, the careful one otherwise."""
        new = tuple.__new__
        delimiter = parser.spec.delimiter
        fast = None if parser.spec.layout == Layout.INVESTING_TR else parser.fast
        width = parser.width
        final, order, daily = keeper.final, keeper.order, keeper.daily
        earliest, latest = self.dates.earliest, self.dates.latest
        for text in lines:
            number += 1
            if '"' in text or _UNREADABLE in text:
                item = self._careful(text, number, parser, split)
                if item is not None:
                    yield self._finalised(item, keeper, parser)
                continue
            fields = text.rstrip("\r\n").split(delimiter)
            parsed = fast(fields) if fast is not None and len(fields) == width else None
            if parsed is not None:
                ts = parsed[0]
                if ts.tzinfo is not UTC or daily and (ts.hour or ts.minute or ts.second or ts.microsecond):
                    try:
                        ts = final(ts)
                    except (OverflowError, ValueError):  # near year 1 or 9999: the careful path says why
                        ts = _NEVER
                if earliest <= ts <= latest:
                    self.rows_read += 1
                    order(ts)
                    yield new(Candle, (number, ts, *parsed[1:]))
                    continue
            item = self._parse(fields, number, parser)
            if item is not None:
                yield self._finalised(item, keeper, parser)

    def _parse(self, fields: list[str], line: int, parser: _RowParser):
        """One row by the careful path: a tuple (line, ts, o, h, l, c, v, adj,
        extra), a Reject, or None for a blank line."""
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            return None  # blank lines (trailing ones especially) are not rows
        self.rows_read += 1
        delimiter = parser.spec.delimiter
        if len(fields) != parser.width:
            return Reject(line, delimiter.join(fields), f"expected {parser.width} fields, found {len(fields)}")
        try:
            ts, o, h, lo, c, v, adj, extra = parser(fields)
        except FieldError as exc:
            name = str(exc).split(":", 1)[0]
            return Reject(line, delimiter.join(fields), f"unparseable {exc}", name)
        reason = validate(o, h, lo, c, v, adj=adj)
        if reason is not None:
            return Reject(line, delimiter.join(fields), reason)
        raw = delimiter.join(fields)
        return (line, ts, str(o), str(h), str(lo), str(c), str(v), None if adj is None else str(adj), extra, raw)

    def _timeframe(self, stamps: list[datetime]) -> str:
        found = timeframe_from_gaps([naive for s in stamps if (naive := _naive_utc(s)) is not None])
        if found:
            return found
        if not stamps or all(s.hour == 0 and s.minute == 0 and s.second == 0 for s in stamps):
            return "1d"
        raise FileFormatError(
            f"{self.path.name}: one intraday row only, the timeframe cannot be told; give it explicitly"
        )


def _naive_utc(ts: datetime) -> datetime | None:
    """A stamp as naive UTC, or None when it falls off the calendar (year 1 at +05:00)."""
    if ts.tzinfo is None:
        return ts
    try:
        return ts.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return None


def _chain_first(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def iter_file(path: str | os.PathLike, **kwargs) -> Iterator[Candle | Reject]:
    """Shortcut: every item of a file (see `CsvFileReader`)."""
    return iter(CsvFileReader(path, **kwargs))


__all__ = [
    "Candle",
    "CsvFileReader",
    "DateRange",
    "FileFormatError",
    "FileMeta",
    "Layout",
    "Reject",
    "detect_layout",
    "iter_file",
    "market_from_path",
    "parse_number",
    "parse_number_tr",
    "parse_timestamp",
    "plausible_dates",
    "ticker_from_filename",
    "timeframe_from_gaps",
    "validate",
]
