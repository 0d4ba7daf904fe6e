"""The provider layer's one error type and the words that say why a call failed."""

from __future__ import annotations

from enum import StrEnum


class FailureReason(StrEnum):
    """Why a provider call gave no usable answer; also the fetch log's outcome word."""

    THROTTLED = "throttled"  # HTTP 429, or a vendor's "slow down" inside a 200
    BANNED = "banned"  # HTTP 418: Binance's ban after ignoring 429s
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # refused connection, DNS failure
    UNAUTHORIZED = "unauthorized"  # key missing or refused
    NOT_FOUND = "not_found"  # the provider does not know the symbol
    EMPTY = "empty"  # an answer with nothing in it (often: unknown symbol)
    BAD_REQUEST = "bad_request"
    MALFORMED = "malformed"  # a body we cannot read
    PROVIDER_ERROR = "provider_error"  # an error the vendor reported in its body
    CIRCUIT_OPEN = "circuit_open"
    RATE_LIMITED = "rate_limited"  # our shared budget is spent
    OVER_BUDGET = "over_budget"  # a call heavier than the whole budget
    UNSUPPORTED = "unsupported"  # the client cannot do this (no metadata, no candles, bad timeframe)
    ALL_FAILED = "all_failed"  # every provider of a fallback failed
    ERROR = "error"  # anything else


# Our own limits (budget, an open circuit, a capability we lack) say nothing about the vendor.
NOT_THE_PROVIDERS_FAULT = frozenset(
    {FailureReason.RATE_LIMITED, FailureReason.OVER_BUDGET, FailureReason.CIRCUIT_OPEN, FailureReason.UNSUPPORTED}
)


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
        reason: FailureReason = FailureReason.ERROR,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = retryable
        self.reason = FailureReason(reason)

    def __str__(self) -> str:
        return self.message
