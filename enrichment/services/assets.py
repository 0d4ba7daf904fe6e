"""Asset enrichment (seed 000): metadata for symbols from the enabled providers
in priority order, merged, scored, and written back set-based.

Per symbol every source ends as one of: ok (gave data), empty (does not know
the symbol), failed (error after retries), unavailable (circuit open, blocked,
rate budget exhausted), n/a (no mapping for this kind of symbol). The outcome:
- enriched: a remote source gave data and none failed;
- partial: some data, but a remote source failed or only the local reference
  data could be used;
- failed: no data at all.
When no remote source gave data and at least one failed or was unavailable,
the symbol goes to the dead-letter table (once: a repeat failure bumps its
attempts) with the options needed to resubmit it.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from enrichment import metrics_providers as metrics
from enrichment.models import AssetEnrichmentResult, AssetEnrichmentRun
from enrichment.providers import get_client
from enrichment.providers.base import INFO_FIELDS, AssetInfo, ProviderError
from enrichment.providers.fallback import providers_in_priority
from enrichment.services import quality
from enrichment.services.mapping import _kind, crypto_pair, mapping_infer, mappings_ensure
from etl.errors import DomainError
from etl.models import DataProvider, DeadLetter, RunStatus, Symbol, SymbolMapping
from etl.progress import Cancelled, ProgressReporter

logger = logging.getLogger(__name__)

LOCAL = "LOCAL"
DEAD_LETTER_KIND = "enrichment"
SELECTIONS = ("never", "stale", "all")
# Symbol field lengths, so a long vendor value is cut rather than refused.
LIMITS = {"name": 200, "sector": 100, "industry": 150, "website": 200, "category": 100, "quote_currency": 16}
# Provider field -> Symbol field.
FIELD_MAP = {name: name for name in INFO_FIELDS} | {"currency": "quote_currency"}


@dataclass(frozen=True, slots=True)
class EnrichOptions:
    """What one run does. Names follow the seed's options."""

    sources: tuple[str, ...] | None = None  # provider codes and/or "LOCAL"; None: every usable one
    selection: str = "never"  # never enriched | stale | all
    stale_days: int = 30
    symbols: tuple[str, ...] = ()  # "TICKER" or "TICKER@MARKET"
    symbol_ids: tuple[int, ...] = ()
    concurrency: int = 3
    batch_size: int = 50
    overwrite: bool = False
    rate_limit_delay: float = 0.0  # seconds between two symbols in one worker
    max_retries: int = 3  # attempts per call
    timeout: float | None = None  # seconds per call; None: the provider record's
    dead_letter: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> EnrichOptions:
        """Parse and check options from the API, a command or a dead letter; DomainError names the field.
        The old system's names (enabledSources, maxConcurrency, rateLimitDelay "00:00:00.500", ...) are accepted."""
        data = seed_options_translate(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise DomainError(f"Unknown option(s): {', '.join(sorted(unknown))}", code="invalid_option")
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
            raise DomainError(f"Bad option value: {exc}", code="invalid_option") from None
        opts.check()
        return opts

    def check(self) -> None:
        problems = []
        if self.selection not in SELECTIONS:
            problems.append(f"selection must be one of {', '.join(SELECTIONS)}")
        if not 1 <= self.concurrency <= 16:
            problems.append("concurrency must be 1-16")
        if not 1 <= self.batch_size <= 10_000:
            problems.append("batch_size must be 1-10000")
        if not 1 <= self.max_retries <= 10:
            problems.append("max_retries must be 1-10")
        if self.stale_days < 1:
            problems.append("stale_days must be at least 1")
        if not 0 <= self.rate_limit_delay <= 60:
            problems.append("rate_limit_delay must be 0-60 seconds")
        if self.timeout is not None and not 0 < self.timeout <= 300:
            problems.append("timeout must be 0-300 seconds")
        if self.sources is not None:
            known = set(DataProvider.objects.values_list("code", flat=True)) | {LOCAL}
            bad = [s for s in self.sources if s not in known]
            if bad:
                problems.append(f"unknown source(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        if problems:
            raise DomainError("; ".join(problems), code="invalid_option")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sources"] = list(self.sources) if self.sources is not None else None
        out["symbols"] = list(self.symbols)
        out["symbol_ids"] = list(self.symbol_ids)
        return out


# The seed's option names (the .NET system's JSON) -> ours; TimeSpans become seconds.
SEED_ALIASES = {
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
        raise ValueError(f"{value!r} is not a TimeSpan (hh:mm:ss[.fff])")
    h, m, sec = (float(x) for x in parts)
    return days * 86400 + h * 3600 + m * 60 + sec


def seed_options_translate(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = SEED_ALIASES.get(key, key)
        if name in TIMESPAN_OPTIONS and value not in (None, ""):
            try:
                value = timespan_seconds(value)
            except ValueError as exc:
                raise DomainError(f"{key}: {exc}", code="invalid_option") from None
        out[name] = value
    return out


@dataclass(frozen=True, slots=True)
class SourceReport:
    status: str  # ok | empty | failed | unavailable | n/a
    provider_symbol: str = ""
    error: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SymbolOutcome:
    symbol_id: int
    ref: str
    outcome: str
    sources: dict[str, SourceReport]
    fields_updated: tuple[str, ...]
    quality: quality.QualityScore
    dead_lettered: bool
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.ref,
            "outcome": self.outcome,
            "sources": {k: {"status": v.status, "error": v.error} for k, v in self.sources.items()},
            "fields_updated": list(self.fields_updated),
            "quality": self.quality.as_dict(),
            "dead_lettered": self.dead_lettered,
        }


@dataclass(frozen=True, slots=True)
class EnrichResult:
    run_id: int
    total: int
    enriched: int
    partial: int
    failed: int
    dead_lettered: int
    sources: tuple[str, ...]
    cancelled: bool = False
    outcomes: tuple[SymbolOutcome, ...] = ()

    def to_dict(self, *, details: int = 50) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "total": self.total,
            "enriched": self.enriched,
            "partial": self.partial,
            "failed": self.failed,
            "dead_lettered": self.dead_lettered,
            "sources": list(self.sources),
            "cancelled": self.cancelled,
            "symbols": [o.to_dict() for o in self.outcomes[:details]],
        }


# -- selection -------------------------------------------------------------------------------
def assets_select(*, options: EnrichOptions) -> QuerySet[Symbol]:
    """The symbols a run covers: named ones, else never enriched / stale / all active ones."""
    qs = Symbol.objects.select_related("market", "asset_class").order_by("id")
    if options.symbols or options.symbol_ids:
        cond = Q(pk__in=options.symbol_ids)
        missing = []
        for name in options.symbols:
            ticker, _, market = name.upper().partition("@")
            one = Q(ticker__iexact=ticker) & (Q(market__code=market) if market else Q())
            if not Symbol.objects.filter(one).exists():
                missing.append(name)
            cond |= one
        if missing:
            raise DomainError(f"Unknown symbol(s): {', '.join(missing)}", code="unknown_symbol")
        return qs.filter(cond)
    qs = qs.filter(is_active=True)
    if options.selection == "never":
        return qs.filter(enriched_at__isnull=True)
    if options.selection == "stale":
        cutoff = timezone.now() - timedelta(days=options.stale_days)
        return qs.filter(Q(enriched_at__isnull=True) | Q(enriched_at__lt=cutoff))
    return qs


def sources_resolve(options: EnrichOptions) -> list[str]:
    """Remote providers able to give metadata, in priority order, then LOCAL (if asked)."""
    remote = providers_in_priority(capability="info")
    if options.sources is None:
        return [*remote, LOCAL]
    # Named sources keep the providers' priority order, not the order typed.
    chosen = [code for code in remote if code in options.sources]
    return [*chosen, LOCAL] if LOCAL in options.sources else chosen


# -- local reference data ----------------------------------------------------------------------
@lru_cache(maxsize=4)
def _catalogue(path: str, mtime: float) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return {
            (row.get("ticker", "").strip().upper(), row.get("market", "").strip().upper()): row
            for row in csv.DictReader(fh)
        }


def catalogue_path() -> Path:
    """A CSV of known metadata (ticker,market,name,sector,industry,country,currency,...):
    settings.ENRICHMENT_CATALOGUE, else DATA_ROOT/sample/catalogue.csv."""
    configured = getattr(settings, "ENRICHMENT_CATALOGUE", "")
    return Path(configured) if configured else Path(settings.DATA_ROOT) / "sample" / "catalogue.csv"


def local_info(symbol: Symbol) -> AssetInfo:
    """What the reference data (market, asset class, pair) and the local catalogue know; no network."""
    kind = _kind(symbol)
    values: dict[str, Any] = {}
    if kind == "crypto":
        base, quote = crypto_pair(symbol)
        values["currency"] = quote
        values["category"] = "Cryptocurrency"
    else:
        values["currency"] = symbol.market.currency
        if kind in {"bist", "us"}:
            values["country"] = symbol.market.country
        if symbol.asset_class_id:
            values["category"] = symbol.asset_class.name
    path = catalogue_path()
    if path.is_file():
        row = _catalogue(str(path), path.stat().st_mtime).get((symbol.ticker.upper(), symbol.market.code))
        for name in INFO_FIELDS:
            if row and (row.get(name) or "").strip():
                values[name] = row[name].strip()
        if "market_cap" in values:
            try:
                values["market_cap"] = Decimal(str(values["market_cap"]))
            except ArithmeticError:
                values.pop("market_cap")
    return AssetInfo(provider=LOCAL, provider_symbol=symbol.ticker, **values)


# -- one symbol ---------------------------------------------------------------------------------
def _ask(client, provider_symbol: str) -> SourceReport:
    try:
        info = client.fetch_asset_info(provider_symbol=provider_symbol)
    except ProviderError as exc:
        if exc.reason in {"not_found", "empty"}:
            status = "empty"
        elif exc.reason in {"circuit_open", "rate_limited"}:
            status = "unavailable"
        else:
            status = "failed"
        return SourceReport(status=status, provider_symbol=provider_symbol, error=exc.message)
    values = info.known()
    return SourceReport(status="ok" if values else "empty", provider_symbol=provider_symbol, values=values)


def _gather(
    symbol: Symbol, sources: list[str], mapped: dict[str, str | None], clients: dict, delay: float
) -> dict[str, SourceReport]:
    reports: dict[str, SourceReport] = {}
    for code in sources:
        if code == LOCAL:
            values = local_info(symbol).known()
            reports[code] = SourceReport(status="ok" if values else "empty", values=values)
            continue
        provider_symbol = mapped.get(code)
        if not provider_symbol:
            reports[code] = SourceReport(status="n/a")
            continue
        reports[code] = _ask(clients[code], provider_symbol)
    if delay:
        time.sleep(delay)
    return reports


def _merge(
    symbol: Symbol, reports: dict[str, SourceReport], *, overwrite: bool
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """New Symbol field values: the first source in priority order that knows a field wins;
    without `overwrite` only blank fields are filled."""
    changes: dict[str, Any] = {}
    for provider_field, symbol_field in FIELD_MAP.items():
        value = next(
            (r.values[provider_field] for r in reports.values() if r.values.get(provider_field) not in (None, "")),
            None,
        )
        if value is None:
            continue
        if symbol_field == "country" and len(str(value)) != 2:
            continue
        if isinstance(value, str) and symbol_field in LIMITS:
            value = value[: LIMITS[symbol_field]]
        current = getattr(symbol, symbol_field)
        if current not in (None, "") and not overwrite:
            continue
        if current != value:
            changes[symbol_field] = value
    return changes, tuple(sorted(changes))


def _outcome(reports: dict[str, SourceReport]) -> tuple[str, bool]:
    remote = {k: r for k, r in reports.items() if k != LOCAL}
    remote_ok = any(r.status == "ok" for r in remote.values())
    remote_bad = any(r.status in {"failed", "unavailable"} for r in remote.values())
    any_data = any(r.status == "ok" for r in reports.values())
    if remote_ok and not remote_bad:
        outcome = AssetEnrichmentResult.Outcome.ENRICHED
    elif any_data:
        outcome = AssetEnrichmentResult.Outcome.PARTIAL
    else:
        outcome = AssetEnrichmentResult.Outcome.FAILED
    return outcome, (not remote_ok and remote_bad)


# -- the run ---------------------------------------------------------------------------------
def _clients(sources: list[str], options: EnrichOptions, client_options: dict | None) -> dict:
    extra = {"max_attempts": options.max_retries, **({"timeout": options.timeout} if options.timeout else {})}
    return {code: get_client(code, **extra, **(client_options or {})) for code in sources if code != LOCAL}


def _mapped(batch: list[Symbol], sources: list[str]) -> dict[int, dict[str, str | None]]:
    stored = {
        (m.symbol_id, m.provider.code): m.provider_symbol
        for m in SymbolMapping.objects.filter(symbol__in=batch).select_related("provider")
    }
    return {
        s.pk: {
            code: stored.get((s.pk, code)) or mapping_infer(symbol=s, provider_code=code)
            for code in sources
            if code != LOCAL
        }
        for s in batch
    }


def _work(batch, sources, mapped, options, client_options) -> list[dict[str, SourceReport]]:
    """Ask the providers about a batch; `concurrency` threads, each with its own clients
    (a requests Session is not shared across threads) and database connection."""
    if options.concurrency == 1 or len(batch) == 1:
        clients = _clients(sources, options, client_options)
        return [_gather(s, sources, mapped[s.pk], clients, options.rate_limit_delay) for s in batch]

    def worker(chunk: list[Symbol]) -> list[dict[str, SourceReport]]:
        close_old_connections()
        try:
            clients = _clients(sources, options, client_options)
            return [_gather(s, sources, mapped[s.pk], clients, options.rate_limit_delay) for s in chunk]
        finally:
            connections.close_all()

    chunks = [batch[i :: options.concurrency] for i in range(options.concurrency)]
    with ThreadPoolExecutor(max_workers=options.concurrency) as pool:
        results = list(pool.map(worker, chunks))
    by_symbol = {}
    for chunk, reports in zip(chunks, results, strict=True):
        for s, r in zip(chunk, reports, strict=True):
            by_symbol[s.pk] = r
    return [by_symbol[s.pk] for s in batch]


def _dead_letter(symbol: Symbol, outcome_error: str, options: EnrichOptions, sources: dict) -> bool:
    """Once per symbol: a repeat failure bumps the open dead letter instead of adding one.
    Returns True when a new dead letter was created."""
    ref = f"{symbol.ticker}@{symbol.market.code}"
    payload = {
        "symbol_id": symbol.pk,
        "ticker": symbol.ticker,
        "market": symbol.market.code,
        "options": {**options.to_dict(), "symbols": [], "symbol_ids": [symbol.pk]},
        "sources": sources,
    }
    with transaction.atomic():
        existing = (
            DeadLetter.objects.select_for_update()
            .filter(kind=DEAD_LETTER_KIND, ref=ref, resolved_at__isnull=True)
            .first()
        )
        if existing:
            existing.attempts += 1
            existing.error = outcome_error
            existing.payload = payload
            existing.save(update_fields=["attempts", "error", "payload"])
            return False
        DeadLetter.objects.create(kind=DEAD_LETTER_KIND, ref=ref, payload=payload, error=outcome_error)
        return True


def _apply(batch, reports_list, options: EnrichOptions, run: AssetEnrichmentRun) -> list[SymbolOutcome]:
    """Write a batch back: symbol fields (one bulk UPDATE), per-symbol results (one INSERT),
    dead letters for the symbols every remote source failed, and resolution of old ones."""
    now = timezone.now()
    outcomes: list[SymbolOutcome] = []
    changed_fields: set[str] = {"enrichment_attempted_at", "data_quality_score", "updated_at"}
    resolved_refs = []
    for symbol, reports in zip(batch, reports_list, strict=True):
        changes, fields_updated = _merge(symbol, reports, overwrite=options.overwrite)
        outcome, to_dead_letter = _outcome(reports)
        remote_ok = any(r.status == "ok" for k, r in reports.items() if k != LOCAL)
        for name, value in changes.items():
            setattr(symbol, name, value)
        changed_fields.update(changes)
        if remote_ok:
            symbol.enriched_at = now
            changed_fields.add("enriched_at")
        symbol.enrichment_attempted_at = now
        values = {f: getattr(symbol, f) for f in ("name", "sector", "industry", "country", "quote_currency")}
        values |= {f: getattr(symbol, f) for f in ("market_cap", "description", "website", "category")}
        score = quality.quality_score(
            values=values,
            kind={"crypto": "crypto", "fx": "fx", "bist": "stock", "us": "stock"}.get(_kind(symbol), "other"),
            enriched_at=symbol.enriched_at,
            reports=[r.values for k, r in reports.items() if r.status == "ok" and k != LOCAL],
            now=now,
            stale_days=options.stale_days,
        )
        symbol.data_quality_score = score.score
        error = "; ".join(f"{k}: {r.error}" for k, r in reports.items() if r.status in {"failed", "unavailable"})
        ref = f"{symbol.ticker}@{symbol.market.code}"
        created_dl = False
        if to_dead_letter and options.dead_letter:
            created_dl = _dead_letter(
                symbol, error, options, {k: {"status": r.status, "error": r.error} for k, r in reports.items()}
            )
        elif remote_ok:
            resolved_refs.append(ref)
        outcomes.append(
            SymbolOutcome(
                symbol_id=symbol.pk,
                ref=ref,
                outcome=outcome,
                sources=reports,
                fields_updated=fields_updated,
                quality=score,
                dead_lettered=created_dl,
                error=error,
            )
        )
    with transaction.atomic():
        Symbol.objects.bulk_update(batch, sorted(changed_fields))
        AssetEnrichmentResult.objects.bulk_create(
            [
                AssetEnrichmentResult(
                    run=run,
                    symbol_id=o.symbol_id,
                    outcome=o.outcome,
                    sources={
                        k: {"status": r.status, "provider_symbol": r.provider_symbol, "error": r.error}
                        for k, r in o.sources.items()
                    },
                    fields_updated=list(o.fields_updated),
                    quality_score=o.quality.score,
                    completeness=o.quality.completeness,
                    freshness=o.quality.freshness,
                    agreement=o.quality.agreement,
                    error=o.error,
                )
                for o in outcomes
            ]
        )
        if resolved_refs:
            DeadLetter.objects.filter(kind=DEAD_LETTER_KIND, ref__in=resolved_refs, resolved_at__isnull=True).update(
                resolved_at=now
            )
    return outcomes


def assets_enrich(
    *,
    options: EnrichOptions,
    run: AssetEnrichmentRun | None = None,
    requested_by: str = "",
    progress: ProgressReporter | None = None,
    bar: bool = False,
    client_options: dict | None = None,
) -> EnrichResult:
    """Enrich the selected symbols batch by batch; each batch is written in one
    transaction, so a crash loses at most the batch in flight. Records the run and
    its per-symbol results; cancellable between batches."""
    options.check()
    symbols_qs = assets_select(options=options)
    sources = sources_resolve(options)
    if run is None:
        run = AssetEnrichmentRun.objects.create(options=options.to_dict(), requested_by=requested_by)
    total = symbols_qs.count()
    AssetEnrichmentRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, started_at=timezone.now(), symbols_total=total, progress_total=total
    )
    reporter = progress or ProgressReporter(run, total=total, label="enrich assets", bar=bar)
    if progress is not None:
        reporter.set_total(total)
    outcomes: list[SymbolOutcome] = []
    cancelled = False
    counts = {"enriched": 0, "partial": 0, "failed": 0, "dead_lettered": 0}
    try:
        ids = list(symbols_qs.values_list("pk", flat=True))
        for start in range(0, len(ids), options.batch_size):
            batch = list(
                Symbol.objects.select_related("market", "asset_class")
                .filter(pk__in=ids[start : start + options.batch_size])
                .order_by("pk")
            )
            # Store the inferred spellings (ON CONFLICT DO NOTHING) so the mapping editor shows them.
            mappings_ensure(
                symbols=Symbol.objects.filter(pk__in=[s.pk for s in batch]),
                provider_codes=[c for c in sources if c != LOCAL],
            )
            reports = _work(batch, sources, _mapped(batch, sources), options, client_options)
            done = _apply(batch, reports, options, run)
            outcomes.extend(done)
            for o in done:
                counts[o.outcome] += 1
                metrics.asset_enrichment_symbols.labels(outcome=o.outcome).inc()
                counts["dead_lettered"] += int(o.dead_lettered)
            AssetEnrichmentRun.objects.filter(pk=run.pk).update(**counts)
            reporter.advance(len(batch))
    except Cancelled:
        cancelled = True
    except Exception as exc:
        AssetEnrichmentRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    finally:
        if progress is None:
            reporter.close()
    AssetEnrichmentRun.objects.filter(pk=run.pk).update(
        status=RunStatus.CANCELLED if cancelled else RunStatus.SUCCEEDED, finished_at=timezone.now(), **counts
    )
    return EnrichResult(
        run_id=run.pk,
        total=total,
        sources=tuple(sources),
        cancelled=cancelled,
        outcomes=tuple(outcomes),
        **counts,
    )


def asset_enrichment_queue(*, options: EnrichOptions, requested_by: str) -> AssetEnrichmentRun:
    """Record a queued run and hand it to a django-q2 worker once the row is committed."""
    from functools import partial

    from django_q.tasks import async_task

    options.check()
    run = AssetEnrichmentRun.objects.create(options=options.to_dict(), requested_by=requested_by)
    transaction.on_commit(partial(async_task, "enrichment.tasks_assets.assets_enrich", run.pk, group="enrichment"))
    return run


# -- dead letters -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ResubmitResult:
    resubmitted: int
    resolved: int
    still_failing: int
    run_ids: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "run_ids": list(self.run_ids)}


def dead_letters_resubmit(
    *, ids: list[int] | None = None, requested_by: str = "", client_options: dict | None = None
) -> ResubmitResult:
    """Enrich again the symbols of open enrichment dead letters (all of them, or `ids`),
    each with the options it failed under (one run per distinct set of options).
    A symbol that now gets remote data resolves its letter."""
    letters = DeadLetter.objects.filter(kind=DEAD_LETTER_KIND, resolved_at__isnull=True)
    if ids is not None:
        letters = letters.filter(pk__in=ids)
    letters = list(letters)
    if not letters:
        raise DomainError("No open enrichment dead letters to resubmit", code="nothing_to_resubmit")
    groups: dict[str, list[int]] = {}
    for letter in letters:
        stored = {
            k: v
            for k, v in (letter.payload.get("options") or {}).items()
            if k in EnrichOptions.__dataclass_fields__ and k not in {"symbols", "symbol_ids", "selection"}
        }
        if letter.payload.get("symbol_id"):
            groups.setdefault(json.dumps(stored, sort_keys=True), []).append(int(letter.payload["symbol_id"]))
    DeadLetter.objects.filter(pk__in=[dl.pk for dl in letters]).update(resubmitted_at=timezone.now())
    run_ids = []
    for stored_json, symbol_ids in groups.items():
        options = replace(
            EnrichOptions.from_dict(json.loads(stored_json)), symbol_ids=tuple(symbol_ids), selection="all"
        )
        result = assets_enrich(options=options, requested_by=requested_by or "resubmit", client_options=client_options)
        run_ids.append(result.run_id)
    resolved = DeadLetter.objects.filter(pk__in=[dl.pk for dl in letters], resolved_at__isnull=False).count()
    return ResubmitResult(
        resubmitted=len(letters), resolved=resolved, still_failing=len(letters) - resolved, run_ids=tuple(run_ids)
    )


# -- pipeline step -----------------------------------------------------------------------------------
def enrich_step(*, options: dict, progress: ProgressReporter | None = None) -> dict[str, Any]:
    """The orchestrator's "enrich" step: never-enriched symbols by default. Offline
    (no network, no keys) it still succeeds: remote providers fail fast behind their
    circuits and the local reference data fills what it can."""
    step_options = {k.removeprefix("enrich_"): v for k, v in (options or {}).items() if k.startswith("enrich_")}
    result = assets_enrich(options=EnrichOptions.from_dict(step_options), requested_by="pipeline", progress=progress)
    return {k: v for k, v in result.to_dict(details=0).items() if k != "symbols"}
