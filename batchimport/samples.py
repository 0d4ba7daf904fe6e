"""Generated scraper files: the project's own fixtures, demo data and benchmark input.

Every layout the importer reads can be written here, with a known number of
defective rows mixed in (each one a kind the validator must reject), so tests
and the demo know exactly what the import must report. No ORM.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from batchimport.parsing import BINANCE_COLUMNS, INVESTING_HEADER, STANDARD_HEADER, Layout
from etl import calendars

BIST_DETAILED_HEADER = (
    "HGDG_HS_KODU,Tarih,DuzeltilmisKapanis,AcilisFiyati,EnDusuk,EnYuksek,Hacim,END_ENDEKS_KODU,END_TARIH,END_SEANS,"
    "END_DEGER,DD_DOVIZ_KODU,DD_DT_KODU,DD_TARIH,DD_DEGER,DOLAR_BAZLI_FIYAT,ENDEKS_BAZLI_FIYAT,DOLAR_HACIM,SERMAYE,"
    "HG_KAPANIS,HG_AOF,HG_MIN,HG_MAX,PD,PD_USD,HAO_PD,HAO_PD_USD,HG_HACIM,DOLAR_BAZLI_MIN,DOLAR_BAZLI_MAX,"
    "DOLAR_BAZLI_AOF,HisseKodu"
).split(",")

DEFECTS = ("high_below_low", "negative_volume", "bad_number", "duplicate", "close_outside", "bad_date")


@dataclass(frozen=True, slots=True)
class Bar:
    day: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def taker_buy_volume(self) -> float:
        """The aggressive buyers' share of the volume: more of it on a rising bar, with some
        noise from the volume itself so that it varies on flat bars too (no extra random draw:
        the prices of a seed stay what they were)."""
        move = (self.close - self.open) / self.open if self.open else 0.0
        noise = (self.volume % 997) / 997 * 0.2 - 0.1
        return self.volume * min(0.9, max(0.1, 0.5 + 10 * move + noise))


# The trading days of each sample folder's market: crypto trades every day, the exchanges
# on their real calendars (holidays skipped, as the exchanges do).
FOLDER_CALENDARS = {"BIST": "XIST", "Crypto": calendars.ALWAYS_OPEN_CODE, "NASDAQ": "XNAS", "NYSE": "XNYS"}


@dataclass(slots=True)
class FileSummary:
    path: Path
    layout: Layout
    rows: int = 0  # data rows written (good + defective)
    defects: int = 0
    defect_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def good(self) -> int:
        return self.rows - self.defects


def _daily_moments(start: datetime, count: int, calendar_code: str) -> list[datetime]:
    """Bar times of daily bars: the calendar's trading days from `start` (weekdays without one)."""
    if calendar_code:
        # Outside exchange-calendars' range the weekdays serve.
        weekdays = tuple((day * 1440, (day + 1) * 1440) for day in range(5))
        calendar = calendars.exchange_calendar(calendar_code, "UTC", intervals=weekdays)
        days = calendars.trading_days(calendar, first=start.date(), count=count)
    else:
        days = [d.date() for d in (start + timedelta(days=i) for i in range(count * 2 + 7)) if d.weekday() < 5]
    return [datetime.combine(d, start.time(), tzinfo=start.tzinfo) for d in days[:count]]


def bars(
    *,
    rng: random.Random,
    start: datetime,
    count: int,
    step: timedelta,
    price: float = 100.0,
    calendar_code: str = "",
) -> list[Bar]:
    """A random walk of plausible candles. Daily steps fall on the trading days of the
    exchange-calendars `calendar_code` ("24/7": every day; blank: weekdays)."""
    out: list[Bar] = []
    moments = iter(_daily_moments(start, count, calendar_code)) if step == timedelta(days=1) else None
    moment = start
    while len(out) < count:
        if moments is not None:
            moment = next(moments)
        elif step > timedelta(days=1) and moment.weekday() >= 5:
            moment += step
            continue
        o = price
        c = max(0.01, o * (1 + rng.gauss(0, 0.02)))
        h = max(o, c) * (1 + abs(rng.gauss(0, 0.005)))
        lo = min(o, c) * (1 - abs(rng.gauss(0, 0.005)))
        out.append(
            Bar(moment, round(o, 2), round(h, 2), round(lo, 2), round(c, 2), float(rng.randint(1_000, 5_000_000)))
        )
        price = c
        moment += step
    return out


def _defect(kind: str, values: dict[str, str]) -> dict[str, str]:
    broken = dict(values)
    if kind == "high_below_low":
        broken["high"], broken["low"] = values["low"], values["high"]
        if broken["high"] == broken["low"]:
            broken["low"] = broken["high"] + "1"
    elif kind == "negative_volume":
        broken["volume"] = "-" + values["volume"]
    elif kind == "bad_number":
        broken["close"] = "n/a"
    elif kind == "close_outside":
        broken["close"] = values["high"] + "9"
    elif kind == "bad_date":
        broken["date"] = "2024-13-45"
    return broken


class _Writer:
    """Turns bars into text lines for one layout, injecting defects."""

    def __init__(self, layout: Layout, ticker: str, *, delimiter: str = ",", index_column: bool = False):
        self.layout = layout
        self.ticker = ticker
        self.delimiter = delimiter
        self.index_column = index_column
        self.n = 0

    def header(self) -> str | None:
        d = self.delimiter
        if self.layout == Layout.BIST_DETAILED:
            return ",".join(BIST_DETAILED_HEADER)
        if self.layout == Layout.STANDARD:
            return ",".join(STANDARD_HEADER)
        if self.layout == Layout.YAHOO:
            if self.index_column:
                return ",date,open,high,low,close,volume"
            return "Datetime,Open,High,Low,Close,Adj Close,Volume,Dividends,Stock Splits"
        if self.layout == Layout.BINANCE:
            return ",".join(BINANCE_COLUMNS) if self.delimiter == "header" else None
        return d.join(f'"{h}"' for h in INVESTING_HEADER)

    def values(self, bar: Bar, *, epoch_us: bool = False, tz_offset: str = "") -> dict[str, str]:
        layout = self.layout
        if layout == Layout.INVESTING_TR:

            def tr(x: float, places: int = 2) -> str:
                whole, frac = f"{x:,.{places}f}".split(".")
                return whole.replace(",", ".") + "," + frac

            vol = bar.volume
            volume = f"{vol / 1e6:.2f}M".replace(".", ",") if vol >= 1e6 else f"{vol / 1e3:.2f}K".replace(".", ",")
            return {
                "date": bar.day.strftime("%d.%m.%Y"),
                "open": tr(bar.open, 3),
                "high": tr(bar.high, 3),
                "low": tr(bar.low, 3),
                "close": tr(bar.close, 3),
                "volume": volume,
            }
        if layout == Layout.BINANCE:
            stamp = int(bar.day.replace(tzinfo=UTC).timestamp()) * (1_000_000 if epoch_us else 1000)
            return {
                "date": str(stamp),
                "open": f"{bar.open:.8f}",
                "high": f"{bar.high:.8f}",
                "low": f"{bar.low:.8f}",
                "close": f"{bar.close:.8f}",
                "volume": f"{bar.volume:.8f}",
            }
        if layout == Layout.BIST_DETAILED:
            date_text = bar.day.strftime("%d-%m-%Y")
        elif layout == Layout.YAHOO and not self.index_column:
            date_text = bar.day.strftime("%Y-%m-%d %H:%M:%S") + tz_offset
        else:
            date_text = bar.day.strftime("%Y-%m-%d")
        return {
            "date": date_text,
            "open": f"{bar.open:.2f}",
            "high": f"{bar.high:.2f}",
            "low": f"{bar.low:.2f}",
            "close": f"{bar.close:.2f}",
            "volume": f"{bar.volume:.0f}",
        }

    def line(self, v: dict[str, str], bar: Bar, *, epoch_us: bool = False) -> str:
        layout = self.layout
        self.n += 1
        if layout == Layout.STANDARD:
            adj = f"{bar.close * 0.97:.2f}"
            return ",".join([self.ticker, v["date"], v["open"], v["high"], v["low"], v["close"], adj, v["volume"]])
        if layout == Layout.YAHOO:
            if self.index_column:
                return f"{self.n - 1},{v['date']},{v['open']},{v['high']},{v['low']},{v['close']},{v['volume']}.0"
            adj = f"{bar.close * 0.98:.6f}"
            return f"{v['date']},{v['open']},{v['high']},{v['low']},{v['close']},{adj},{v['volume']},0.0,0.0"
        if layout == Layout.BINANCE:
            step = 86_400_000 * (1000 if epoch_us else 1)
            close_time = str(int(v["date"]) + step - 1) if v["date"].isdigit() else v["date"]
            quote = f"{bar.volume * bar.close:.8f}"
            return ",".join(
                [
                    v["date"],
                    v["open"],
                    v["high"],
                    v["low"],
                    v["close"],
                    v["volume"],
                    close_time,
                    quote,
                    "1234",
                    f"{bar.taker_buy_volume:.8f}",
                    f"{bar.taker_buy_volume * bar.close:.8f}",
                    "0",
                ]
            )
        if layout == Layout.INVESTING_TR:
            d = self.delimiter
            fields = [v["date"], v["close"], v["open"], v["high"], v["low"], v["volume"], "1,64%"]
            return d.join(f'"{f}"' for f in fields)
        # BIST detailed: unadjusted HG_* columns carry the OHLC (see docs/import.md)
        # a mean of values in [low, high] on the 0.01 grid stays inside it
        vwap = f"{(bar.high + bar.low + bar.close) / 3:.2f}"
        usd = 32.5
        ms = int(bar.day.replace(tzinfo=UTC).timestamp() * 1000)
        turnover = f"{bar.volume * bar.close:.2f}"
        return ",".join(
            [
                self.ticker,
                v["date"],
                f"{bar.close * 0.95:.4f}",
                f"{float(vwap) * 0.95:.4f}",
                f"{bar.low * 0.95:.4f}",
                f"{bar.high * 0.95:.4f}",
                turnover,
                "XU100",
                str(ms),
                "4",
                "9123.45",
                "USD",
                "A",
                str(ms),
                str(usd),
                f"{bar.close / usd:.4f}",
                "0.0123",
                f"{bar.volume * bar.close / usd:.2f}",
                "4.56E9",
                v["close"],
                vwap,
                v["low"],
                v["high"],
                "1.2E11",
                "3.7E9",
                "4.1E10",
                "1.26E9",
                v["volume"],
                f"{bar.low / usd:.4f}",
                f"{bar.high / usd:.4f}",
                f"{float(vwap) / usd:.4f}",
                self.ticker,
            ]
        )


def write_file(
    path: Path,
    layout: Layout,
    *,
    ticker: str,
    rows: int,
    seed: int = 1,
    start: datetime | None = None,
    step: timedelta = timedelta(days=1),
    defect_every: int = 0,
    newest_first: bool | None = None,
    delimiter: str = ",",
    with_header: bool = True,
    epoch_us: bool = False,
    tz_offset: str = "",
    index_column: bool = False,
    bom: bool = False,
    crlf: bool = False,
    calendar_code: str = "",
) -> FileSummary:
    """Write one file of `rows` bars; every `defect_every`-th bar is followed by a copy broken
    in one of the `DEFECTS` ways (a duplicate repeats the row). `summary.rows` counts the
    lines written, good and defective."""
    rng = random.Random(seed)
    start = start or datetime(2020, 1, 1)
    writer = _Writer(
        layout, ticker, delimiter=delimiter if layout == Layout.INVESTING_TR else ",", index_column=index_column
    )
    if layout == Layout.BINANCE and with_header:
        writer.delimiter = "header"
    summary = FileSummary(path=path, layout=layout)
    series = bars(rng=rng, start=start, count=rows, step=step, calendar_code=calendar_code)
    lines: list[str] = []
    defect_no = seed % len(DEFECTS)  # so a folder of files covers every kind
    for i, bar in enumerate(series, start=1):
        values = writer.values(bar, epoch_us=epoch_us, tz_offset=tz_offset)
        text = writer.line(values, bar, epoch_us=epoch_us)
        lines.append(text)
        if defect_every and i % defect_every == 0 and i > 1:
            # A broken copy next to the good row: the importer rejects it and the series
            # keeps every bar (a missing crypto bar would break its features' windows).
            kind = DEFECTS[defect_no % len(DEFECTS)]
            defect_no += 1
            summary.defects += 1
            summary.defect_kinds[kind] = summary.defect_kinds.get(kind, 0) + 1
            lines.append(text if kind == "duplicate" else writer.line(_defect(kind, values), bar, epoch_us=epoch_us))
    summary.rows = len(lines)
    if newest_first if newest_first is not None else layout == Layout.INVESTING_TR:
        lines.reverse()
    header = writer.header() if with_header else None
    eol = "\r\n" if crlf else "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        if header:
            handle.write(header + eol)
        for text in lines:
            handle.write(text + eol)
        handle.write(eol)  # a blank trailing line, as the scraper leaves
    return summary


@dataclass(frozen=True, slots=True)
class SampleSummary:
    root: Path
    files: tuple[FileSummary, ...]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def defects(self) -> int:
        return sum(f.defects for f in self.files)

    def by_market(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            out[f.path.parent.name] = out.get(f.path.parent.name, 0) + f.rows
        return out


BIST_TICKERS = ["THYAO", "AGROT", "GARAN", "ASELS", "KCHOL", "SISE", "EREGL", "BIMAS", "AKBNK", "TUPRS"]
CRYPTO_TICKERS = ["BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX"]
NASDAQ_TICKERS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "CALM"]
NYSE_TICKERS = ["JPM", "KO", "XOM", "IBM", "WMT", "DIS", "GE", "ORCL"]


def write_sample_folder(
    root: Path, *, seed: int = 42, tickers: int = 4, days: int = 250, defect_every: int = 50
) -> SampleSummary:
    """A scraper DATA folder (BIST/, Crypto/, NASDAQ/, NYSE/) with every layout,
    `tickers` files per market, and one defective row in every `defect_every`; each market's
    bars on its own trading days (`FOLDER_CALENDARS`)."""
    root = Path(root)
    files: list[FileSummary] = []
    start = datetime(2023, 1, 2)
    n = 0

    def add(folder: str, name: str, layout: Layout, ticker: str, **kw) -> None:
        nonlocal n
        n += 1
        kw.setdefault("start", start)
        files.append(
            write_file(
                root / folder / name,
                layout,
                ticker=ticker,
                rows=days,
                seed=seed * 1000 + n,
                defect_every=defect_every,
                **kw,
            )
        )

    bist_layouts = [
        (Layout.BIST_DETAILED, "{t}.csv", {}),
        (Layout.STANDARD, "{t}_historical.csv", {"crlf": True}),
        (Layout.INVESTING_TR, "{t}_daily.csv", {}),
        (Layout.INVESTING_TR, "{t}_data.csv", {"delimiter": ";", "bom": True}),
    ]
    crypto_layouts = [
        (Layout.BINANCE, "{t}.csv", {"with_header": False}),
        (Layout.BINANCE, "{t}_historical.csv", {"with_header": True}),
        (Layout.BINANCE, "{t}_data.csv", {"with_header": False, "epoch_us": True}),
        (Layout.STANDARD, "{t}_daily.csv", {}),
    ]
    nasdaq_layouts = [
        (Layout.YAHOO, "{t}.csv", {"tz_offset": "-05:00"}),
        (Layout.YAHOO, "{t}_historical.csv", {"index_column": True}),
        (Layout.STANDARD, "{t}_data.csv", {"bom": True}),
    ]
    nyse_layouts = [
        (Layout.STANDARD, "{t}.csv", {}),
        (Layout.YAHOO, "{t}_hist.csv", {"index_column": True, "crlf": True}),
        (Layout.YAHOO, "{t}_daily.csv", {"tz_offset": "-04:00"}),
    ]
    for folder, names, layouts in (
        ("BIST", BIST_TICKERS, bist_layouts),
        ("Crypto", CRYPTO_TICKERS, crypto_layouts),
        ("NASDAQ", NASDAQ_TICKERS, nasdaq_layouts),
        ("NYSE", NYSE_TICKERS, nyse_layouts),
    ):
        for i in range(tickers):
            ticker = names[i % len(names)] + ("" if i < len(names) else str(i // len(names)))
            layout, pattern, kw = layouts[i % len(layouts)]
            if kw.get("epoch_us"):  # Binance spot archives switched to µs on 2025-01-01
                kw = {**kw, "start": datetime(2025, 1, 6)}
            add(folder, pattern.format(t=ticker), layout, ticker, calendar_code=FOLDER_CALENDARS[folder], **kw)
    return SampleSummary(root=root, files=tuple(files))


def write_standard_rows(
    path: Path, *, rows: int, ticker: str = "BENCH", seed: int = 7, step: timedelta = timedelta(minutes=1)
) -> int:
    """A big STANDARD-layout file, quickly (benchmark input): no defects, minute bars."""
    rng = random.Random(seed)
    moment = datetime(2020, 1, 1)
    price = 100.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(STANDARD_HEADER) + "\n")
        chunk: list[str] = []
        for _ in range(rows):
            o = price
            c = max(0.01, o * (1 + (rng.random() - 0.5) * 0.002))
            h = max(o, c) + 0.01
            lo = min(o, c) - 0.01
            stamp = f"{moment:%Y-%m-%d %H:%M:%S}"
            chunk.append(f"{ticker},{stamp},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{c:.2f},{rng.randint(1, 99999)}\n")
            price = c
            moment += step
            if len(chunk) >= 10_000:
                handle.writelines(chunk)
                chunk.clear()
        handle.writelines(chunk)
    return rows


__all__ = ["FileSummary", "SampleSummary", "bars", "write_file", "write_sample_folder", "write_standard_rows"]
