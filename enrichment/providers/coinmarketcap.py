"""CoinMarketCap /v1/cryptocurrency/info. Key in the X-CMC_PRO_API_KEY header.

CMC reports errors in `status.error_code` as well as the HTTP code; both are read.
One call carries up to `info_batch_size` symbols, comma-separated, with
`skip_invalid=true`; a server that still refuses the list with a 400 naming the
symbols it does not know ("Invalid value for "symbol": "FOO,BAR"") is asked once
more without them, and those symbols are reported unknown."""

from __future__ import annotations

import re
from typing import Any

from enrichment.providers.base import AssetInfo, ProviderClient, batch_label, clean_str
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
_INVALID_SYMBOLS = re.compile(r'Invalid values? for \\?"symbol\\?": \\?"([^"\\]+)')


class CoinMarketCapClient(ProviderClient):
    code = "COINMARKETCAP"
    supports_info = True
    info_batch_size = 100

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
        entry = _entry(payload, provider_symbol)
        if entry is None:
            raise ProviderError(
                f"{self.code} info: {provider_symbol} unknown", permanent=True, reason=FailureReason.NOT_FOUND
            )
        return self._info(provider_symbol, entry)

    def info_chunk(self, provider_symbols: list[str]) -> dict[str, AssetInfo]:
        try:
            payload = self._info_call(provider_symbols)
        except ProviderError as exc:
            invalid = _invalid_symbols(exc)
            rest = [s for s in provider_symbols if s.upper() not in invalid]
            if exc.status_code != 400 or not invalid or not rest or len(rest) == len(provider_symbols):
                raise
            payload = self._info_call(rest)
        found = {s: _entry(payload, s) for s in provider_symbols}
        return {s: self._info(s, entry) for s, entry in found.items() if entry is not None}

    def _info_call(self, provider_symbols: list[str]) -> dict[str, Any]:
        return self.get_json(
            "/v1/cryptocurrency/info",
            endpoint="info",
            params={"symbol": ",".join(provider_symbols), "skip_invalid": "true"},
            symbol=batch_label(provider_symbols),
        )

    def _info(self, provider_symbol: str, entry: dict[str, Any]) -> AssetInfo:
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


def _entry(payload: dict[str, Any], provider_symbol: str) -> dict[str, Any] | None:
    """v1 keys the data by the symbol asked for; some plans return a list per key."""
    data = payload.get("data") or {}
    entry = data.get(provider_symbol) or data.get(provider_symbol.upper()) if isinstance(data, dict) else None
    if isinstance(entry, list):
        entry = entry[0] if entry else None
    return entry if isinstance(entry, dict) else None


def _invalid_symbols(exc: ProviderError) -> set[str]:
    """The symbols a 400 says CMC does not know (upper-cased); empty when it names none."""
    match = _INVALID_SYMBOLS.search(exc.message)
    return {s.strip().upper() for s in match.group(1).split(",") if s.strip()} if match else set()
