"""The options of an asset-enrichment run: parsed and checked once, from the API, a
command, the pipeline or a dead letter; the old system's names are accepted."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.utils.translation import gettext

from etl.errors import DomainError
from etl.models import DataProvider

# The source that is our own reference data and local catalogue (no network).
LOCAL_REFERENCE = "LOCAL"
# The offline catalogue of index constituents (pytickersymbols), below every live provider.
CATALOGUE = "CATALOGUE"
# Sources that need no network: they only fill blank fields, never replace a value.
OFFLINE_SOURCES = (CATALOGUE, LOCAL_REFERENCE)
SELECTIONS = ("never", "stale", "all")


@dataclass(frozen=True, slots=True)
class EnrichOptions:
    """What one run does. Names follow the old system's options."""

    sources: tuple[str, ...] | None = None  # provider codes and/or OFFLINE_SOURCES; None: every usable one
    selection: str = "never"  # never enriched | stale | all
    stale_days: int = 30
    symbols: tuple[str, ...] = ()  # "TICKER" or "TICKER@MARKET"
    symbol_ids: tuple[int, ...] = ()
    concurrency: int = 3
    batch_size: int = 50
    overwrite: bool = False
    rate_limit_delay: float = 0.0  # seconds between two provider calls of one worker
    max_retries: int = 3  # attempts per call
    timeout: float | None = None  # seconds per call; None: the provider record's
    dead_letter: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EnrichOptions:
        """Parse and check options from the API, a command or a dead letter; DomainError names the field.
        The old system's names (enabledSources, maxConcurrency, rateLimitDelay "00:00:00.500", ...) are accepted."""
        data = old_options_translate(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise DomainError(
                gettext("Unknown option(s): %(options)s") % {"options": ", ".join(sorted(unknown))},
                code="invalid_option",
            )
        try:
            opts = cls(
                sources=tuple(s.strip().upper() for s in data["sources"]) if data.get("sources") else None,
                selection=str(data.get("selection", "never")),
                stale_days=int(data.get("stale_days", 30)),
                symbols=tuple(str(s).strip() for s in data.get("symbols") or () if str(s).strip()),
                symbol_ids=tuple(int(i) for i in data.get("symbol_ids") or ()),
                concurrency=int(data.get("concurrency", 3)),
                batch_size=int(data.get("batch_size", 50)),
                overwrite=bool(data.get("overwrite", False)),
                rate_limit_delay=float(data.get("rate_limit_delay", 0.0)),
                max_retries=int(data.get("max_retries", 3)),
                timeout=float(data["timeout"]) if data.get("timeout") not in (None, "") else None,
                dead_letter=bool(data.get("dead_letter", True)),
            )
        except (TypeError, ValueError) as exc:
            raise DomainError(gettext("Bad option value: %(error)s") % {"error": exc}, code="invalid_option") from None
        opts.check()
        return opts

    def check(self) -> None:
        problems = []
        if self.selection not in SELECTIONS:
            problems.append(gettext("selection must be one of %(choices)s") % {"choices": ", ".join(SELECTIONS)})
        if not 1 <= self.concurrency <= 16:
            problems.append(gettext("concurrency must be 1-16"))
        if not 1 <= self.batch_size <= 10_000:
            problems.append(gettext("batch_size must be 1-10000"))
        if not 1 <= self.max_retries <= 10:
            problems.append(gettext("max_retries must be 1-10"))
        if self.stale_days < 1:
            problems.append(gettext("stale_days must be at least 1"))
        if not 0 <= self.rate_limit_delay <= 60:
            problems.append(gettext("rate_limit_delay must be 0-60 seconds"))
        if self.timeout is not None and not 0 < self.timeout <= 300:
            problems.append(gettext("timeout must be 0-300 seconds"))
        if self.sources is not None:
            known = set(DataProvider.objects.values_list("code", flat=True)) | set(OFFLINE_SOURCES)
            bad = [s for s in self.sources if s not in known]
            if bad:
                problems.append(
                    gettext("unknown source(s) %(unknown)s; known: %(known)s")
                    % {"unknown": ", ".join(bad), "known": ", ".join(sorted(known))}
                )
        if problems:
            raise DomainError("; ".join(problems), code="invalid_option")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sources"] = list(self.sources) if self.sources is not None else None
        out["symbols"] = list(self.symbols)
        out["symbol_ids"] = list(self.symbol_ids)
        return out


# The old system's option names (its .NET JSON) -> ours; TimeSpans become seconds.
OLD_SYSTEM_ALIASES = {
    "enabledSources": "sources",
    "maxConcurrency": "concurrency",
    "batchSize": "batch_size",
    "overwriteExistingData": "overwrite",
    "rateLimitDelay": "rate_limit_delay",
    "maxRetries": "max_retries",
    "requestTimeout": "timeout",
    "staleDays": "stale_days",
}
TIMESPAN_OPTIONS = {"rate_limit_delay", "timeout"}


def timespan_seconds(value: Any) -> float:
    """Seconds from a number or a .NET TimeSpan string ("00:00:30", "00:00:00.500", "1.02:00:00")."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if ":" not in text:
        return float(text)
    days = 0.0
    head, _, rest = text.partition(":")
    if "." in head:
        d, _, head = head.partition(".")
        days = float(d)
    parts = [head, *rest.split(":")]
    if len(parts) != 3:
        raise ValueError(gettext("%(value)s is not a TimeSpan (hh:mm:ss[.fff])") % {"value": repr(value)})
    h, m, sec = (float(x) for x in parts)
    return days * 86400 + h * 3600 + m * 60 + sec


def old_options_translate(data: dict[str, Any]) -> dict[str, Any]:
    """The old system's option names and TimeSpan strings turned into ours; DomainError on a bad TimeSpan."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = OLD_SYSTEM_ALIASES.get(key, key)
        if name in TIMESPAN_OPTIONS and value not in (None, ""):
            try:
                value = timespan_seconds(value)
            except ValueError as exc:
                raise DomainError(f"{key}: {exc}", code="invalid_option") from None
        out[name] = value
    return out
