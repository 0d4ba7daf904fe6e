"""Alpha Vantage function=OVERVIEW. Key in `apikey`.

Alpha Vantage throttles with HTTP 200 and a body of `{"Note": ...}` or
`{"Information": ...}`; those are treated exactly like a 429. An unknown
symbol is `{}`; every value is a string and missing ones are "None"."""

from __future__ import annotations

from typing import Any

from enrichment.providers.base import AssetInfo, ProviderClient, clean_decimal, clean_str
from enrichment.providers.errors import FailureReason, ProviderError

COUNTRIES = {"USA": "US", "UNITED STATES": "US", "TURKEY": "TR", "UK": "GB", "UNITED KINGDOM": "GB", "CANADA": "CA"}


class AlphaVantageClient(ProviderClient):
    code = "ALPHA_VANTAGE"
    supports_info = True

    def auth_params(self) -> dict[str, str]:
        return {"apikey": self.api_key} if self.api_key else {}

    def check_payload(self, payload: Any, *, endpoint: str) -> None:
        if not isinstance(payload, dict):
            raise ProviderError(f"{self.code} {endpoint}: expected an object", reason=FailureReason.MALFORMED)
        for key in ("Note", "Information"):
            if key in payload:
                raise ProviderError(
                    f"{self.code} {endpoint}: throttled ({key}: {self.redact(clean_str(payload[key]))[:160]})",
                    retryable=True,
                    reason=FailureReason.THROTTLED,
                )
        if "Error Message" in payload:
            raise ProviderError(
                f"{self.code} {endpoint}: {self.redact(clean_str(payload['Error Message']))[:200]}",
                permanent=True,
                reason=FailureReason.BAD_REQUEST,
            )
        if not payload:
            raise ProviderError(
                f"{self.code} {endpoint}: empty answer (unknown symbol)", permanent=True, reason=FailureReason.EMPTY
            )

    def fetch_asset_info(self, *, provider_symbol: str) -> AssetInfo:
        p = self.get_json(
            "/query",
            endpoint="overview",
            params={"function": "OVERVIEW", "symbol": provider_symbol},
            symbol=provider_symbol,
        )
        country = clean_str(p.get("Country")).upper()
        return AssetInfo(
            provider=self.code,
            provider_symbol=provider_symbol,
            name=clean_str(p.get("Name"), limit=200),
            sector=clean_str(p.get("Sector"), limit=100).title(),
            industry=clean_str(p.get("Industry"), limit=150).title(),
            country=COUNTRIES.get(country, country if len(country) == 2 else ""),
            currency=clean_str(p.get("Currency")).upper()[:8],
            market_cap=clean_decimal(p.get("MarketCapitalization")),
            description=clean_str(p.get("Description")),
            website=clean_str(p.get("OfficialSite"), limit=200),
            category=clean_str(p.get("AssetType")).title(),
            extra={"exchange": clean_str(p.get("Exchange"))},
        )
