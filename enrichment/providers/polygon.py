"""Polygon.io: range aggregates (paged through `next_url`) and ticker details. Key in `apiKey`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from enrichment.providers.base import (
    AssetInfo,
    ProviderCandle,
    ProviderClient,
    check_timeframe,
    clean_decimal,
    clean_str,
    to_ms,
    utc_from_ms,
)
from enrichment.providers.errors import FailureReason, ProviderError

SPANS = {
    "1m": (1, "minute"),
    "5m": (5, "minute"),
    "15m": (15, "minute"),
    "1h": (1, "hour"),
    "4h": (4, "hour"),
    "1d": (1, "day"),
}
MAX_PAGES = 1000


class PolygonClient(ProviderClient):
    code = "POLYGON"
    supports_info = True
    supports_candles = True

    def auth_params(self) -> dict[str, str]:
        return {"apiKey": self.api_key} if self.api_key else {}

    def check_payload(self, payload: Any, *, endpoint: str) -> None:
        if not isinstance(payload, dict):
            raise ProviderError(f"{self.code} {endpoint}: expected an object", reason=FailureReason.MALFORMED)
        status = clean_str(payload.get("status")).upper()
        if status in {"ERROR", "NOT_AUTHORIZED"}:
            message = clean_str(payload.get("error") or payload.get("message"))
            raise ProviderError(
                f"{self.code} {endpoint}: {status} {self.redact(message)}".strip(),
                permanent=status == "NOT_AUTHORIZED",
                reason=FailureReason.UNAUTHORIZED if status == "NOT_AUTHORIZED" else "provider_error",
            )
        if status == "NOT_FOUND":
            raise ProviderError(f"{self.code} {endpoint}: not found", permanent=True, reason=FailureReason.NOT_FOUND)

    def fetch_candles(
        self, *, provider_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> list[ProviderCandle]:
        check_timeframe(timeframe)
        multiplier, span = SPANS[timeframe]
        path = f"/v2/aggs/ticker/{provider_symbol}/range/{multiplier}/{span}/{to_ms(start)}/{to_ms(end)}"
        payload = self.get_json(
            path,
            endpoint="aggs",
            symbol=provider_symbol,
            params={"adjusted": "true", "sort": "asc", "limit": 50000},
        )
        out: list[ProviderCandle] = []
        for _ in range(MAX_PAGES):
            out.extend(self._parse(payload))
            next_url = clean_str(payload.get("next_url"))
            if not next_url:
                break
            # next_url carries no key; we add it, so it must point at the provider we trust.
            if not next_url.startswith(self.base_url + "/"):
                raise ProviderError(
                    f"{self.code} aggs: next_url leaves {self.base_url}", reason=FailureReason.MALFORMED
                )
            payload = self.get_json("", url=next_url, endpoint="aggs", symbol=provider_symbol)
        start_ms, end_ms = to_ms(start), to_ms(end)
        unique = {c.ts: c for c in out if start_ms <= to_ms(c.ts) <= end_ms}
        return [unique[ts] for ts in sorted(unique)]

    def _parse(self, payload: dict[str, Any]) -> list[ProviderCandle]:
        try:
            return [
                ProviderCandle(
                    ts=utc_from_ms(r["t"]),
                    open=float(r["o"]),
                    high=float(r["h"]),
                    low=float(r["l"]),
                    close=float(r["c"]),
                    volume=float(r.get("v") or 0.0),
                    trades=int(r["n"]) if r.get("n") is not None else None,
                )
                for r in payload.get("results") or []
            ]
        except (TypeError, ValueError, KeyError) as exc:
            raise ProviderError(f"{self.code} aggs: bad result ({exc})", reason=FailureReason.MALFORMED) from None

    def fetch_asset_info(self, *, provider_symbol: str) -> AssetInfo:
        payload = self.get_json(
            f"/v3/reference/tickers/{provider_symbol}", endpoint="ticker_details", symbol=provider_symbol
        )
        r = payload.get("results")
        if not isinstance(r, dict) or not r:
            raise ProviderError(
                f"{self.code} ticker_details: no results for {provider_symbol}",
                permanent=True,
                reason=FailureReason.EMPTY,
            )
        locale = clean_str(r.get("locale")).upper()
        return AssetInfo(
            provider=self.code,
            provider_symbol=provider_symbol,
            name=clean_str(r.get("name"), limit=200),
            industry=clean_str(r.get("sic_description"), limit=150),
            country=locale if len(locale) == 2 and locale != "GLOBAL" else "",
            currency=clean_str(r.get("currency_name")).upper()[:8],
            market_cap=clean_decimal(r.get("market_cap")),
            description=clean_str(r.get("description")),
            website=clean_str(r.get("homepage_url"), limit=200),
            category=clean_str(r.get("type")),
            extra={"market": clean_str(r.get("market")), "exchange": clean_str(r.get("primary_exchange"))},
        )
