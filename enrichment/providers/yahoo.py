"""Yahoo Finance v8 chart: candles and the `meta` block (name, currency, exchange, type)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from enrichment.providers.base import (
    AssetInfo,
    ProviderCandle,
    ProviderClient,
    check_timeframe,
    clean_str,
)
from enrichment.providers.errors import FailureReason, ProviderError

# Yahoo's interval names, and how much history one request may span for each.
INTERVALS = {"1m": "1m", "5m": "5m", "15m": "15m", "1h": "60m", "1d": "1d"}
MAX_SPAN = {
    "1m": timedelta(days=7),
    "5m": timedelta(days=59),
    "15m": timedelta(days=59),
    "1h": timedelta(days=729),
    "1d": timedelta(days=365 * 100),
}
CATEGORIES = {
    "EQUITY": "Equity",
    "ETF": "ETF",
    "CRYPTOCURRENCY": "Cryptocurrency",
    "CURRENCY": "Currency",
    "INDEX": "Index",
    "FUTURE": "Future",
    "MUTUALFUND": "Mutual fund",
}
# Exchange time zone -> ISO country, for listed instruments only.
COUNTRIES = {
    "America/New_York": "US",
    "America/Chicago": "US",
    "Europe/Istanbul": "TR",
    "Europe/London": "GB",
    "Europe/Berlin": "DE",
    "Europe/Paris": "FR",
    "Asia/Tokyo": "JP",
}


class YahooClient(ProviderClient):
    code = "YAHOO_FINANCE"
    supports_info = True
    supports_candles = True

    def check_payload(self, payload: Any, *, endpoint: str) -> None:
        chart = payload.get("chart") if isinstance(payload, dict) else None
        if not isinstance(chart, dict):
            raise ProviderError(f"{self.code} {endpoint}: no 'chart' in the answer", reason=FailureReason.MALFORMED)
        error = chart.get("error")
        if error:
            code = clean_str(error.get("code") if isinstance(error, dict) else error)
            description = clean_str(error.get("description")) if isinstance(error, dict) else ""
            not_found = code.lower().replace(" ", "") in {"notfound", "nodata"}
            raise ProviderError(
                f"{self.code} {endpoint}: {code}: {description}".rstrip(": "),
                permanent=not_found or code.lower() == "bad request",
                reason=FailureReason.NOT_FOUND if not_found else "provider_error",
            )
        results = chart.get("result")
        if not results or not isinstance(results, list) or not isinstance(results[0], dict):
            raise ProviderError(
                f"{self.code} {endpoint}: empty chart result", permanent=True, reason=FailureReason.EMPTY
            )

    def chart(self, *, provider_symbol: str, params: dict[str, Any]) -> dict[str, Any]:
        payload = self.get_json(
            f"/v8/finance/chart/{provider_symbol}", endpoint="chart", params=params, symbol=provider_symbol
        )
        return payload["chart"]["result"][0]

    def fetch_asset_info(self, *, provider_symbol: str) -> AssetInfo:
        meta = self.chart(provider_symbol=provider_symbol, params={"range": "1d", "interval": "1d"}).get("meta") or {}
        instrument = clean_str(meta.get("instrumentType")).upper()
        listed = instrument in {"EQUITY", "ETF", "MUTUALFUND"}
        return AssetInfo(
            provider=self.code,
            provider_symbol=provider_symbol,
            name=clean_str(meta.get("longName") or meta.get("shortName"), limit=200),
            currency=clean_str(meta.get("currency")).upper()[:8],
            country=COUNTRIES.get(clean_str(meta.get("exchangeTimezoneName")), "") if listed else "",
            category=CATEGORIES.get(instrument, instrument.title()),
            extra={
                "exchange": clean_str(meta.get("fullExchangeName") or meta.get("exchangeName")),
                "timezone": clean_str(meta.get("exchangeTimezoneName")),
                "instrument_type": instrument,
            },
        )

    def fetch_candles(
        self, *, provider_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> list[ProviderCandle]:
        """Bars whose open time lies in [start, end]. Yahoo has no 4h bars: they
        are built from 1h bars on UTC 4-hour boundaries."""
        check_timeframe(timeframe)
        if timeframe == "4h":
            return aggregate(
                self.fetch_candles(provider_symbol=provider_symbol, timeframe="1h", start=start, end=end), 4
            )
        candles: dict[datetime, ProviderCandle] = {}
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + MAX_SPAN[timeframe])
            result = self.chart(
                provider_symbol=provider_symbol,
                params={
                    "period1": int(chunk_start.timestamp()),
                    "period2": int(chunk_end.timestamp()) + 1,
                    "interval": INTERVALS[timeframe],
                    "includePrePost": "false",
                    "events": "div,splits",
                },
            )
            for candle in parse_chart(result):
                if start <= candle.ts <= end:
                    candles[candle.ts] = candle
            chunk_start = chunk_end + timedelta(seconds=1)
        return [candles[ts] for ts in sorted(candles)]


def parse_chart(result: dict[str, Any]) -> list[ProviderCandle]:
    """`timestamp[]` with `indicators.quote[0]` arrays; bars with a null price are gaps, not zeros."""
    timestamps = result.get("timestamp") or []
    quotes = ((result.get("indicators") or {}).get("quote") or [{}])[0] or {}
    columns = [quotes.get(k) or [] for k in ("open", "high", "low", "close", "volume")]
    out = []
    for i, ts in enumerate(timestamps):
        o, h, low, c, v = (col[i] if i < len(col) else None for col in columns)
        if None in (o, h, low, c):
            continue
        out.append(
            ProviderCandle(
                ts=datetime.fromtimestamp(int(ts), tz=UTC),
                open=float(o),
                high=float(h),
                low=float(low),
                close=float(c),
                volume=float(v or 0.0),
            )
        )
    return out


def aggregate(candles: list[ProviderCandle], hours: int) -> list[ProviderCandle]:
    """Group bars into UTC-aligned buckets of `hours` (first open, max high, min low, last close, summed volume)."""
    buckets: dict[datetime, list[ProviderCandle]] = {}
    for candle in candles:
        key = candle.ts.replace(hour=candle.ts.hour - candle.ts.hour % hours, minute=0, second=0, microsecond=0)
        buckets.setdefault(key, []).append(candle)
    return [
        ProviderCandle(
            ts=key,
            open=group[0].open,
            high=max(c.high for c in group),
            low=min(c.low for c in group),
            close=group[-1].close,
            volume=sum(c.volume for c in group),
        )
        for key, group in sorted(buckets.items())
    ]
