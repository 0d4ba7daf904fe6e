"""CoinMarketCap /v1/cryptocurrency/info. Key in the X-CMC_PRO_API_KEY header.

CMC reports errors in `status.error_code` as well as the HTTP code; both are read."""

from __future__ import annotations

from typing import Any

from enrichment.providers.base import AssetInfo, ProviderClient, clean_str
from enrichment.providers.errors import FailureReason, ProviderError

# status.error_code -> (reason, permanent, retryable)
ERROR_CODES = {
    1001: (FailureReason.UNAUTHORIZED, True, False),
    1002: (FailureReason.UNAUTHORIZED, True, False),
    1003: (FailureReason.UNAUTHORIZED, True, False),
    1006: (FailureReason.UNAUTHORIZED, True, False),
    1008: (FailureReason.THROTTLED, False, True),
    1009: (FailureReason.THROTTLED, False, False),
    1010: (FailureReason.THROTTLED, False, False),
    1011: (FailureReason.THROTTLED, False, True),
}


class CoinMarketCapClient(ProviderClient):
    code = "COINMARKETCAP"
    supports_info = True

    def auth_headers(self) -> dict[str, str]:
        return {"X-CMC_PRO_API_KEY": self.api_key} if self.api_key else {}

    def check_payload(self, payload: Any, *, endpoint: str) -> None:
        if not isinstance(payload, dict) or not isinstance(payload.get("status"), dict):
            raise ProviderError(f"{self.code} {endpoint}: no 'status' object", reason=FailureReason.MALFORMED)
        code = payload["status"].get("error_code") or 0
        if code:
            reason, permanent, retryable = ERROR_CODES.get(int(code), (FailureReason.PROVIDER_ERROR, True, False))
            message = clean_str(payload["status"].get("error_message"))
            raise ProviderError(
                f"{self.code} {endpoint}: error {code}: {self.redact(message)}",
                permanent=permanent,
                retryable=retryable,
                reason=reason,
            )

    def fetch_asset_info(self, *, provider_symbol: str) -> AssetInfo:
        payload = self.get_json(
            "/v1/cryptocurrency/info", endpoint="info", params={"symbol": provider_symbol}, symbol=provider_symbol
        )
        data = payload.get("data") or {}
        # v1 keys the data by the symbol asked for; some plans return a list per key.
        entry = data.get(provider_symbol) or data.get(provider_symbol.upper())
        if isinstance(entry, list):
            entry = entry[0] if entry else None
        if not isinstance(entry, dict):
            raise ProviderError(
                f"{self.code} info: {provider_symbol} unknown", permanent=True, reason=FailureReason.NOT_FOUND
            )
        urls = entry.get("urls") or {}
        websites = [clean_str(u) for u in urls.get("website") or [] if clean_str(u)]
        return AssetInfo(
            provider=self.code,
            provider_symbol=provider_symbol,
            name=clean_str(entry.get("name"), limit=200),
            description=clean_str(entry.get("description")),
            website=websites[0][:200] if websites else "",
            category=clean_str(entry.get("category")).title(),
            extra={"slug": clean_str(entry.get("slug")), "tags": entry.get("tags") or [], "id": entry.get("id")},
        )
