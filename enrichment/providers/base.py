"""What every provider client shares: the result types, the one error type and
the HTTP call with its timeouts, retries, shared rate limit, shared circuit
breaker and fetch log. The error type is in `errors.py`.

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
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from enrichment.providers import circuit, ratelimit
from enrichment.providers.bookkeeping import CallBook
from enrichment.providers.config import provider_setting
from enrichment.providers.errors import NOT_THE_PROVIDERS_FAULT, FailureReason, ProviderError
from enrichment.providers.fetch_log import FetchRow, fetch_log_write

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


@dataclass(frozen=True, slots=True)
class InfoBatch:
    """What one provider said about many symbols: every symbol asked is in exactly one of
    `infos` (it answered) and `errors` (why not: unknown to it, or the call failed)."""

    infos: dict[str, AssetInfo]
    errors: dict[str, ProviderError]


def batch_label(provider_symbols: list[str]) -> str:
    """The fetch log's symbol for a call about many symbols (its column holds 64 characters)."""
    if len(provider_symbols) == 1:
        return provider_symbols[0]
    return f"{provider_symbols[0]}..{provider_symbols[-1]} ({len(provider_symbols)})"[:64]


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


@dataclass(frozen=True, slots=True)
class StatusRule:
    """What an HTTP status means for a provider call. `reason` None: the vendor's
    `client_error_reason` decides (some answer "unknown symbol" with a 400)."""

    reason: FailureReason | None
    retryable: bool
    permanent: bool
    message: str  # formatted with prefix, status, retry (", Retry-After 5s" or "") and body
    honours_retry_after: bool = False


# The status -> failure table (only 429, 418, 5xx and timeouts are retried).
_THROTTLED = "{prefix}: HTTP {status} rate limited{retry}"
_REFUSED_KEY = "{prefix}: HTTP {status}, API key missing or refused"
STATUS_RULES: dict[int, StatusRule] = {
    429: StatusRule(FailureReason.THROTTLED, True, False, _THROTTLED, honours_retry_after=True),
    418: StatusRule(FailureReason.BANNED, True, False, _THROTTLED, honours_retry_after=True),
    401: StatusRule(FailureReason.UNAUTHORIZED, False, True, _REFUSED_KEY),
    403: StatusRule(FailureReason.UNAUTHORIZED, False, True, _REFUSED_KEY),
    404: StatusRule(FailureReason.NOT_FOUND, False, True, "{prefix}: not found (HTTP {status})"),
}
SERVER_ERROR_RULE = StatusRule(FailureReason.SERVER_ERROR, True, False, "{prefix}: HTTP {status}")
CLIENT_ERROR_RULE = StatusRule(None, False, True, "{prefix}: HTTP {status}: {body}")


def status_rule(status_code: int) -> StatusRule | None:
    """The rule for an HTTP status; None for a success."""
    if status_code in STATUS_RULES:
        return STATUS_RULES[status_code]
    if status_code >= 500:
        return SERVER_ERROR_RULE
    return CLIENT_ERROR_RULE if status_code >= 400 else None


@dataclass(frozen=True, slots=True)
class AttemptTarget:
    """What one attempt asks for, and the names its fetch-log row carries."""

    url: str
    endpoint: str
    params: dict[str, Any]
    symbol: str
    weight: int
    text: bool = False  # the body is plain text (Yahoo's crumb), not JSON


class ProviderClient:
    """One vendor's HTTP client. Subclasses set `code` and write the vendor calls."""

    code: ClassVar[str] = ""
    # What the enrichment and candle services may ask of this client.
    supports_info: ClassVar[bool] = False
    supports_candles: ClassVar[bool] = False
    # How many symbols one metadata call may carry (1: the vendor's API takes one at a time).
    info_batch_size: ClassVar[int] = 1

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
        batched: bool = False,
    ):
        """`batched`: the bookkeeping of many calls in a row (rate-limit grants, circuit reads,
        fetch-log rows) is done per block of requests (`bookkeeping.CallBook`); call `close()`
        at the end, which writes what is pending."""
        self.provider = provider
        self.base_url = provider.base_url.rstrip("/")
        self.max_attempts = max_attempts or provider_setting("MAX_ATTEMPTS")
        self.backoff_base = _given_or(backoff_base, "BACKOFF_BASE")
        self.backoff_max = _given_or(backoff_max, "BACKOFF_MAX")
        self.max_retry_after = _given_or(max_retry_after, "MAX_RETRY_AFTER")
        self.read_timeout = timeout or provider.timeout_seconds
        self.connect_timeout = connect_timeout or min(self.read_timeout, provider_setting("CONNECT_TIMEOUT"))
        self.rate_window = rate_window or provider_setting("RATE_WINDOW_SECONDS")
        self.rate_max_wait = _given_or(rate_max_wait, "RATE_MAX_WAIT")
        self.sleep = sleep
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", "mytrader-data-integrity/1.0")
        self.session.headers.setdefault("Accept", "application/json")
        self.book = (
            CallBook(
                code=self.code,
                budget=provider.rate_limit_per_minute,
                window=self.rate_window,
                max_wait=self.rate_max_wait,
                sleep=self.sleep,
            )
            if batched
            else None
        )

    def close(self) -> None:
        """Write the pending bookkeeping (a batched client) and close the HTTP session."""
        try:
            if self.book is not None:
                self.book.flush()
        finally:
            self.session.close()

    def flush(self) -> None:
        """Write a batched client's pending fetch-log rows and give back its unused budget."""
        if self.book is not None:
            self.book.flush()

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
        text: bool = False,
    ) -> Any:
        """GET base_url + path (or an absolute `url` the vendor handed us, like
        Polygon's next_url) and return the parsed JSON (the body's text with
        `text`), through the circuit breaker, the shared rate limit and the retry
        policy. Every attempt is written to the fetch log."""
        try:
            self._before_call()
        except ProviderError as exc:  # fails fast: logged as attempt 0, never sent
            self._log(endpoint=endpoint, symbol=symbol, attempt=0, outcome=exc.reason, error=exc.message)
            raise
        target = AttemptTarget(
            url=url or f"{self.base_url}{path}",
            endpoint=endpoint,
            params={**(params or {}), **self.auth_params()},
            symbol=symbol,
            weight=weight,
            text=text,
        )
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(self._should_retry),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    payload = self._attempt(target, attempt=attempt.retry_state.attempt_number)
        except ProviderError as exc:
            self._record_failure(exc)
            raise
        self._record_success()
        return payload

    def _before_call(self) -> None:
        if self.book is not None:
            self.book.before_call()
        else:
            circuit.circuit_before_call(self.code)

    def _record_success(self) -> None:
        if self.book is not None:
            self.book.record_success()
        else:
            circuit.circuit_record_success(self.code)

    def _record_failure(self, exc: ProviderError) -> None:
        """Our own limits say nothing about the vendor; neither does a symbol it does not
        know or a request it refuses. Everything else (throttled, down, slow, broken,
        bad key) counts against it."""
        if exc.reason in NOT_THE_PROVIDERS_FAULT:
            return
        if exc.permanent and exc.reason != FailureReason.UNAUTHORIZED:
            self._record_success()
        elif self.book is not None:
            self.book.record_failure(exc.message)
        else:
            circuit.circuit_record_failure(self.code, error=exc.message)

    def _should_retry(self, exc: BaseException) -> bool:
        if not isinstance(exc, ProviderError) or not exc.retryable:
            return False
        return exc.retry_after is None or exc.retry_after <= self.max_retry_after

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(multiplier=self.backoff_base, max=self.backoff_max)(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return max(backoff, retry_after) if retry_after else backoff

    def _attempt(self, target: AttemptTarget, *, attempt: int) -> Any:
        """One attempt: take budget, send, check the status, parse; one fetch-log row either way."""
        try:
            self._take_budget(target.weight)
        except ProviderError as exc:
            self._log(
                endpoint=target.endpoint, symbol=target.symbol, attempt=attempt, outcome=exc.reason, error=exc.message
            )
            raise
        started = time.monotonic()
        response: requests.Response | None = None
        try:
            response = self._send(target)
            self._check_status(response, endpoint=target.endpoint)
            payload = response.text if target.text else self._read_json(response, endpoint=target.endpoint)
        except ProviderError as exc:
            self._log_attempt(target, attempt, response, started, outcome=exc.reason, error=exc.message)
            if self.book is not None:
                self.book.drop_block()  # the next attempt asks the limiter (a Retry-After, another's ban)
            if exc.retryable and self._should_retry(exc) and attempt < self.max_attempts:
                logger.info("%s %s attempt %d failed, will retry: %s", self.code, target.endpoint, attempt, exc.message)
            raise
        self._log_attempt(target, attempt, response, started, outcome="ok", error="")
        return payload

    def send_logged(self, url: str, *, endpoint: str) -> requests.Response:
        """One GET whose status is not ours to judge (a handshake page that sets a cookie):
        budget, circuit and fetch log as every call, no status check, no retry."""
        self._before_call()
        target = AttemptTarget(url=url, endpoint=endpoint, params={}, symbol="", weight=1)
        self._take_budget(1)
        started = time.monotonic()
        try:
            response = self._send(target)
        except ProviderError as exc:
            self._log_attempt(target, 1, None, started, outcome=exc.reason, error=exc.message)
            self._record_failure(exc)
            raise
        self._log_attempt(target, 1, response, started, outcome="ok", error="")
        return response

    def _take_budget(self, weight: int) -> None:
        if self.book is not None:
            self.book.take(weight)
            return
        ratelimit.rate_limit_acquire(
            provider_code=self.code,
            budget=self.provider.rate_limit_per_minute,
            weight=weight,
            window=self.rate_window,
            max_wait=self.rate_max_wait,
            sleep=self.sleep,
        )

    def _send(self, target: AttemptTarget) -> requests.Response:
        try:
            return self.session.get(
                target.url,
                params=target.params,
                headers=self.auth_headers(),
                timeout=(self.connect_timeout, self.read_timeout),
            )
        except requests.Timeout as exc:
            raise ProviderError(
                f"{self.code} {target.endpoint}: timed out ({type(exc).__name__})",
                retryable=True,
                reason=FailureReason.TIMEOUT,
            ) from None
        except requests.RequestException as exc:
            # Refused connections and DNS failures are not retried (only throttling,
            # 5xx and timeouts are) but count against the circuit, so an unreachable
            # provider is skipped after a few calls.
            raise ProviderError(
                f"{self.code} {target.endpoint}: {self.redact(type(exc).__name__ + ': ' + str(exc))[:300]}",
                reason=FailureReason.UNREACHABLE,
            ) from None

    def _check_status(self, response: requests.Response, *, endpoint: str) -> None:
        rule = status_rule(response.status_code)
        if rule is None:
            return
        retry_after = None
        if rule.honours_retry_after:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after:
                circuit.provider_block_until(self.code, seconds=retry_after)
        message = rule.message.format(
            prefix=f"{self.code} {endpoint}",
            status=response.status_code,
            retry=f", Retry-After {retry_after:g}s" if retry_after is not None else "",
            body=self.redact(response.text[:200]) if rule.reason is None else "",
        )
        raise ProviderError(
            message,
            permanent=rule.permanent,
            status_code=response.status_code,
            retry_after=retry_after,
            retryable=rule.retryable,
            reason=rule.reason or self.client_error_reason(response),
        )

    def _read_json(self, response: requests.Response, *, endpoint: str) -> Any:
        try:
            payload = response.json()
        except ValueError:
            raise ProviderError(
                f"{self.code} {endpoint}: malformed JSON ({len(response.content)} bytes)",
                status_code=response.status_code,
                reason=FailureReason.MALFORMED,
            ) from None
        self.check_payload(payload, endpoint=endpoint)
        return payload

    def _log_attempt(
        self, target: AttemptTarget, attempt: int, response: requests.Response | None, started: float, **outcome: str
    ) -> None:
        self._log(
            endpoint=target.endpoint,
            symbol=target.symbol,
            attempt=attempt,
            status_code=response.status_code if response is not None else None,
            duration_ms=(time.monotonic() - started) * 1000,
            size=len(response.content) if response is not None else 0,
            **outcome,
        )

    def _log(
        self,
        *,
        endpoint: str,
        symbol: str,
        attempt: int,
        outcome: str,
        error: str,
        status_code: int | None = None,
        duration_ms: float = 0.0,
        size: int = 0,
    ) -> None:
        row = FetchRow(
            provider=self.code,
            endpoint=endpoint,
            symbol=symbol,
            status_code=status_code,
            duration_ms=duration_ms,
            attempt=attempt,
            size=size,
            error=error,
            outcome=str(outcome),
        )
        if self.book is not None:
            self.book.log(row)
        else:
            fetch_log_write(**{f: getattr(row, f) for f in FetchRow.__slots__ if f != "created_at"})

    def client_error_reason(self, response: requests.Response) -> FailureReason:
        """A vendor that answers "unknown symbol" with a 400 says so here ("not_found")."""
        return FailureReason.BAD_REQUEST

    def check_payload(self, payload: Any, *, endpoint: str) -> None:
        """Vendors that report errors inside HTTP 200 bodies raise here."""

    # -- what subclasses provide ---------------------------------------------------
    def fetch_asset_info(self, *, provider_symbol: str) -> AssetInfo:
        raise ProviderError(f"{self.code} has no asset metadata", permanent=True, reason=FailureReason.UNSUPPORTED)

    def fetch_assets_info(self, *, provider_symbols: list[str]) -> InfoBatch:
        """Metadata for many symbols, `info_batch_size` to a call. A call that fails marks
        every symbol it carried with its error; a symbol the answer leaves out is unknown."""
        wanted = list(dict.fromkeys(provider_symbols))
        infos: dict[str, AssetInfo] = {}
        errors: dict[str, ProviderError] = {}
        for start in range(0, len(wanted), self.info_batch_size):
            chunk = wanted[start : start + self.info_batch_size]
            try:
                found = self.info_chunk(chunk)
            except ProviderError as exc:
                errors.update(dict.fromkeys(chunk, exc))
                continue
            for provider_symbol in chunk:
                if provider_symbol in found:
                    infos[provider_symbol] = found[provider_symbol]
                else:
                    errors[provider_symbol] = ProviderError(
                        f"{self.code}: {provider_symbol} not in the answer",
                        permanent=True,
                        reason=FailureReason.NOT_FOUND,
                    )
        return InfoBatch(infos=infos, errors=errors)

    def info_chunk(self, provider_symbols: list[str]) -> dict[str, AssetInfo]:
        """One call's worth of metadata (at most `info_batch_size` symbols), keyed by the
        symbols asked; raises ProviderError when the call itself fails. Default: one call
        per symbol, for vendors whose API takes one at a time."""
        (provider_symbol,) = provider_symbols
        return {provider_symbol: self.fetch_asset_info(provider_symbol=provider_symbol)}

    def validate_symbol(self, *, provider_symbol: str) -> bool:
        """Does the provider know this symbol? Raises ProviderError only when it could not tell."""
        try:
            self.fetch_asset_info(provider_symbol=provider_symbol)
        except ProviderError as exc:
            if exc.reason in {FailureReason.NOT_FOUND, FailureReason.EMPTY}:
                return False
            raise
        return True

    def fetch_candles(
        self, *, provider_symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> list[ProviderCandle]:
        raise ProviderError(f"{self.code} has no candles", permanent=True, reason=FailureReason.UNSUPPORTED)


def _given_or(value: float | None, setting: str) -> float:
    """An explicit 0 is a real choice (no backoff); only None falls back to the setting."""
    return value if value is not None else provider_setting(setting)


def check_timeframe(timeframe: str) -> None:
    if timeframe not in TIMEFRAMES:
        raise ProviderError(
            f"Unsupported timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}",
            permanent=True,
            reason=FailureReason.UNSUPPORTED,
        )
