"""What every provider client shares: the result types, the one error type and
the HTTP call with its timeouts, retries, shared rate limit, shared circuit
breaker and fetch log.

A vendor module subclasses `ProviderClient`, sets `code`, and turns payloads
into `ProviderCandle` / `AssetInfo`. It never talks to `requests` directly:
`self.get_json(...)` does, so every vendor behaves the same under 429s, 5xx,
timeouts and broken bodies.

Retry policy (the old system's retries "never stopped"): only 429, 418, 5xx
and timeouts are retried, at most `max_attempts` times, with exponential
backoff and full jitter, never sooner than the server's `Retry-After`. A
`Retry-After` longer than `max_retry_after` is not waited out in-process: the
call fails (transient) and the provider is marked blocked until then for every
worker, so nobody keeps hammering a provider that has banned us.
"""

from __future__ import annotations

import email.utils
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import requests
from django.conf import settings
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

logger = logging.getLogger(__name__)

_KEY_IN_URL = re.compile(r"(?i)\b(api_?key|token|access_key)=[^&\s\"']+")


class RedactKeysFilter(logging.Filter):
    """urllib3 logs every request URL at DEBUG, query string (and key) included;
    this filter scrubs key parameters before any handler sees the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _KEY_IN_URL.sub(r"\1=***", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


logging.getLogger("urllib3.connectionpool").addFilter(RedactKeysFilter())

TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h", "1d")
NOT_THE_PROVIDERS_FAULT = frozenset({"rate_limited", "over_budget", "circuit_open", "unsupported"})


@dataclass(frozen=True, slots=True)
class ProviderCandle:
    ts: datetime  # UTC, bar open
    open: float
    high: float
    low: float
    close: float
    volume: float
    taker_buy_volume: float | None = None
    quote_volume: float | None = None
    trades: int | None = None


class ProviderError(Exception):
    """A provider call that did not give a usable answer.

    `permanent` means asking again will not help (unknown symbol, bad request,
    bad key); otherwise the failure is transient (throttled, down, slow,
    broken body, circuit open)."""

    def __init__(
        self,
        message: str,
        permanent: bool = False,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
        reason: str = "",
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = retryable
        # A short machine word: throttled, server_error, timeout, not_found, circuit_open, ...
        self.reason = reason

    def __str__(self) -> str:
        return self.message


# The fields asset enrichment merges, in the order the docs list them.
INFO_FIELDS = (
    "name",
    "sector",
    "industry",
    "country",
    "currency",
    "market_cap",
    "description",
    "website",
    "category",
)


@dataclass(frozen=True, slots=True)
class AssetInfo:
    """Metadata one provider knows about one symbol; blank means unknown."""

    provider: str
    provider_symbol: str
    name: str = ""
    sector: str = ""
    industry: str = ""
    country: str = ""
    currency: str = ""
    market_cap: Decimal | None = None
    description: str = ""
    website: str = ""
    category: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def known(self) -> dict[str, Any]:
        """The fields this source filled."""
        out = {}
        for name in INFO_FIELDS:
            value = getattr(self, name)
            if value not in ("", None):
                out[name] = value
        return out


def clean_str(value: Any, *, limit: int | None = None) -> str:
    """Vendors spell "unknown" many ways (None, "None", "-", "")."""
    if value is None:
        return ""
    text = str(value).strip()
    if text in {"None", "none", "null", "-", "N/A", "n/a"}:
        return ""
    return text[:limit] if limit else text


def clean_decimal(value: Any) -> Decimal | None:
    text = clean_str(value)
    if not text:
        return None
    try:
        number = Decimal(text)
    except ArithmeticError:
        return None
    return number if number.is_finite() and number >= 0 else None


def utc_from_ms(ms: int | str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def provider_setting(name: str, default: Any) -> Any:
    """`settings.ENRICHMENT_PROVIDERS[name]`, else the environment variable
    `ENRICHMENT_<name>`, else the default documented in docs/providers.md."""
    configured = getattr(settings, "ENRICHMENT_PROVIDERS", {})
    if name in configured:
        return configured[name]
    raw = os.environ.get(f"ENRICHMENT_{name}")
    if raw is None or raw == "":
        return default
    try:
        return type(default)(raw)
    except ValueError:
        logger.warning("ignoring ENRICHMENT_%s=%r: not a %s", name, raw, type(default).__name__)
        return default


class ProviderClient:
    """One vendor's HTTP client. Subclasses set `code` and write the vendor calls."""

    code: ClassVar[str] = ""
    # What the enrichment and candle services may ask of this client.
    supports_info: ClassVar[bool] = False
    supports_candles: ClassVar[bool] = False

    def __init__(
        self,
        provider,
        *,
        max_attempts: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        max_retry_after: float | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        rate_window: float | None = None,
        rate_max_wait: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ):
        self.provider = provider
        self.base_url = provider.base_url.rstrip("/")
        self.max_attempts = max_attempts or provider_setting("MAX_ATTEMPTS", 3)
        self.backoff_base = backoff_base if backoff_base is not None else provider_setting("BACKOFF_BASE", 0.5)
        self.backoff_max = backoff_max if backoff_max is not None else provider_setting("BACKOFF_MAX", 30.0)
        self.max_retry_after = (
            max_retry_after if max_retry_after is not None else provider_setting("MAX_RETRY_AFTER", 60.0)
        )
        self.read_timeout = timeout or provider.timeout_seconds
        self.connect_timeout = connect_timeout or min(self.read_timeout, provider_setting("CONNECT_TIMEOUT", 3.05))
        self.rate_window = rate_window or provider_setting("RATE_WINDOW_SECONDS", 60.0)
        self.rate_max_wait = rate_max_wait if rate_max_wait is not None else provider_setting("RATE_MAX_WAIT", 120.0)
        self.sleep = sleep
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", "mytrader-data-integrity/1.0")
        self.session.headers.setdefault("Accept", "application/json")

    # -- secrets -----------------------------------------------------------------
    @property
    def api_key(self) -> str:
        return self.provider.api_key

    def redact(self, text: str) -> str:
        """Error texts from requests carry the full URL, query string (and key) included."""
        key = self.api_key
        return text.replace(key, "***") if key else text

    def auth_params(self) -> dict[str, str]:
        """Query parameters carrying the key (Alpha Vantage, Polygon)."""
        return {}

    def auth_headers(self) -> dict[str, str]:
        """Headers carrying the key (CoinMarketCap)."""
        return {}

    # -- the call ----------------------------------------------------------------
    def get_json(
        self,
        path: str,
        *,
        endpoint: str,
        params: dict[str, Any] | None = None,
        symbol: str = "",
        weight: int = 1,
        url: str | None = None,
    ) -> Any:
        """GET base_url + path (or an absolute `url` the vendor handed us, like
        Polygon's next_url) and return the parsed JSON, through the circuit
        breaker, the shared rate limit and the retry policy. Every attempt is
        written to the fetch log."""
        from enrichment.providers import circuit

        circuit.circuit_before_call(self.code, client=self, endpoint=endpoint, symbol=symbol)
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(self._should_retry),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            payload = retrying(
                self._attempt,
                url or f"{self.base_url}{path}",
                endpoint=endpoint,
                params={**(params or {}), **self.auth_params()},
                symbol=symbol,
                weight=weight,
                counter=[0],
            )
        except ProviderError as exc:
            # Our own limits (budget, an open circuit) say nothing about the vendor;
            # neither does a symbol it does not know or a request it refuses.
            # Everything else (throttled, down, slow, broken, bad key) counts against it.
            if exc.reason in NOT_THE_PROVIDERS_FAULT:
                pass
            elif exc.permanent and exc.reason != "unauthorized":
                circuit.circuit_record_success(self.code)
            else:
                circuit.circuit_record_failure(self.code, error=exc.message)
            raise
        circuit.circuit_record_success(self.code)
        return payload

    def _should_retry(self, exc: BaseException) -> bool:
        if not isinstance(exc, ProviderError) or not exc.retryable:
            return False
        return exc.retry_after is None or exc.retry_after <= self.max_retry_after

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_max)(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(backoff, retry_after) if retry_after else backoff

    def _attempt(self, url: str, *, endpoint: str, params: dict, symbol: str, weight: int, counter: list[int]) -> Any:
        from enrichment.providers import circuit, ratelimit
        from enrichment.services.fetch_log import fetch_log_write

        counter[0] += 1
        attempt = counter[0]
        try:
            ratelimit.rate_limit_acquire(
                provider_code=self.code,
                budget=self.provider.rate_limit_per_minute,
                weight=weight,
                window=self.rate_window,
                max_wait=self.rate_max_wait,
                sleep=self.sleep,
            )
        except ProviderError as exc:
            fetch_log_write(
                provider=self.code,
                endpoint=endpoint,
                symbol=symbol,
                status_code=None,
                duration_ms=0.0,
                attempt=attempt,
                size=0,
                error=exc.message,
                outcome=exc.reason,
            )
            raise
        started = time.monotonic()
        status_code: int | None = None
        size = 0
        try:
            try:
                response = self.session.get(
                    url,
                    params=params,
                    headers=self.auth_headers(),
                    timeout=(self.connect_timeout, self.read_timeout),
                )
            except requests.Timeout as exc:
                raise ProviderError(
                    f"{self.code} {endpoint}: timed out ({type(exc).__name__})", retryable=True, reason="timeout"
                ) from None
            except requests.RequestException as exc:
                # Refused connections and DNS failures are not retried (the brief
                # retries throttling, 5xx and timeouts only) but count against the
                # circuit, so an unreachable provider is skipped after a few calls.
                raise ProviderError(
                    f"{self.code} {endpoint}: {self.redact(type(exc).__name__ + ': ' + str(exc))[:300]}",
                    reason="unreachable",
                ) from None
            status_code = response.status_code
            size = len(response.content)
            if status_code in (429, 418):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after:
                    circuit.provider_block_until(self.code, seconds=retry_after)
                raise ProviderError(
                    f"{self.code} {endpoint}: HTTP {status_code} rate limited"
                    + (f", Retry-After {retry_after:g}s" if retry_after is not None else ""),
                    status_code=status_code,
                    retry_after=retry_after,
                    retryable=True,
                    reason="throttled" if status_code == 429 else "banned",
                )
            if status_code >= 500:
                raise ProviderError(
                    f"{self.code} {endpoint}: HTTP {status_code}",
                    status_code=status_code,
                    retryable=True,
                    reason="server_error",
                )
            if status_code in (401, 403):
                raise ProviderError(
                    f"{self.code} {endpoint}: HTTP {status_code}, API key missing or refused",
                    permanent=True,
                    status_code=status_code,
                    reason="unauthorized",
                )
            if status_code == 404:
                raise ProviderError(
                    f"{self.code} {endpoint}: not found (HTTP 404)",
                    permanent=True,
                    status_code=status_code,
                    reason="not_found",
                )
            if status_code >= 400:
                raise ProviderError(
                    f"{self.code} {endpoint}: HTTP {status_code}: {self.redact(response.text[:200])}",
                    permanent=True,
                    status_code=status_code,
                    reason=self.client_error_reason(response),
                )
            try:
                payload = response.json()
            except ValueError:
                raise ProviderError(
                    f"{self.code} {endpoint}: malformed JSON ({size} bytes)",
                    status_code=status_code,
                    reason="malformed",
                ) from None
            self.check_payload(payload, endpoint=endpoint)
        except ProviderError as exc:
            fetch_log_write(
                provider=self.code,
                endpoint=endpoint,
                symbol=symbol,
                status_code=status_code,
                duration_ms=(time.monotonic() - started) * 1000,
                attempt=attempt,
                size=size,
                error=exc.message,
                outcome=exc.reason or "error",
            )
            if exc.retryable and self._should_retry(exc) and attempt < self.max_attempts:
                logger.info("%s %s attempt %d failed, will retry: %s", self.code, endpoint, attempt, exc.message)
            raise
        fetch_log_write(
            provider=self.code,
            endpoint=endpoint,
            symbol=symbol,
            status_code=status_code,
            duration_ms=(time.monotonic() - started) * 1000,
            attempt=attempt,
            size=size,
            error="",
            outcome="ok",
        )
        return payload

    def client_error_reason(self, response: requests.Response) -> str:
        """A vendor that answers "unknown symbol" with a 400 says so here ("not_found")."""
        return "bad_request"

    def check_payload(self, payload: Any, *, endpoint: str) -> None:
        """Vendors that report errors inside HTTP 200 bodies raise here."""

    # -- what subclasses provide ---------------------------------------------------
    def fetch_asset_info(self, *, provider_symbol: str) -> AssetInfo:
        raise ProviderError(f"{self.code} has no asset metadata", permanent=True, reason="unsupported")

    def validate_symbol(self, *, provider_symbol: str) -> bool:
        """Does the provider know this symbol? Raises ProviderError only when it could not tell."""
        try:
            self.fetch_asset_info(provider_symbol=provider_symbol)
        except ProviderError as exc:
            if exc.reason in {"not_found", "empty"}:
                return False
            raise
        return True

    def fetch_candles(
        self, *, provider_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> list[ProviderCandle]:
        raise ProviderError(f"{self.code} has no candles", permanent=True, reason="unsupported")


def check_timeframe(timeframe: str) -> None:
    if timeframe not in TIMEFRAMES:
        raise ProviderError(f"Unsupported timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}", permanent=True)
