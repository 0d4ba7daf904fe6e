"""Asset enrichment (the old system's enrichment run): metadata for symbols from the enabled providers
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

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

from django.db import close_old_connections, connections, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext
from django_q.tasks import async_task

from enrichment.assets import metadata_score
from enrichment.assets.metrics import asset_enrichment_symbols
from enrichment.assets.models import DEAD_LETTER_KIND, AssetEnrichmentResult, AssetEnrichmentRun
from enrichment.assets.services.enrich_options import CATALOGUE, LOCAL_REFERENCE, OFFLINE_SOURCES, EnrichOptions
from enrichment.assets.services.index_catalogue import catalogue_infos
from enrichment.assets.services.local_catalogue import local_info
from enrichment.assets.services.mapping import mapping_infer, mappings_ensure, symbol_kind
from enrichment.assets.services.refresh_schedule import refresh_schedule_ensure
from enrichment.providers.base import INFO_FIELDS, AssetInfo
from enrichment.providers.clients import get_client
from enrichment.providers.errors import FailureReason, ProviderError
from enrichment.providers.fallback import providers_in_priority
from etl.alerts import run_failure_notify
from etl.errors import DomainError
from etl.models import DeadLetter, RunStatus, Symbol, SymbolMapping
from etl.progress import Cancelled, ProgressReporter

logger = logging.getLogger(__name__)

# The counts a run keeps on its record as it goes.
COUNTED = ("enriched", "partial", "failed", "dead_lettered")
# Symbol field lengths, so a long vendor value is cut rather than refused.
LIMITS = {"name": 200, "sector": 100, "industry": 150, "website": 200, "category": 100, "quote_currency": 16}
# Provider field -> Symbol field.
FIELD_MAP = {name: name for name in INFO_FIELDS} | {"currency": "quote_currency"}


class SourceStatus(StrEnum):
    """How one source did for one symbol."""

    OK = "ok"  # gave data
    EMPTY = "empty"  # does not know the symbol
    FAILED = "failed"  # error after retries
    UNAVAILABLE = "unavailable"  # circuit open, blocked, rate budget exhausted
    NOT_APPLICABLE = "n/a"  # no mapping for this kind of symbol


# A source's failure words that mean "it does not know the symbol", and "we could not ask it".
UNKNOWN_SYMBOL = frozenset({FailureReason.NOT_FOUND, FailureReason.EMPTY})
NOT_ASKED = frozenset({FailureReason.CIRCUIT_OPEN, FailureReason.RATE_LIMITED})
DID_NOT_ANSWER = frozenset({SourceStatus.FAILED, SourceStatus.UNAVAILABLE})


@dataclass(frozen=True, slots=True)
class SourceReport:
    status: SourceStatus
    provider_symbol: str = ""
    error: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    data_version: str = ""  # the offline catalogue's package version


@dataclass(frozen=True, slots=True)
class SymbolOutcome:
    symbol_id: int
    ref: str
    outcome: str
    sources: dict[str, SourceReport]
    fields_updated: tuple[str, ...]
    quality: metadata_score.QualityScore
    dead_lettered: bool
    error: str = ""
    remote_ok: bool = False  # a remote source gave data

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
            raise DomainError(
                gettext("Unknown symbol(s): %(symbols)s") % {"symbols": ", ".join(missing)}, code="unknown_symbol"
            )
        return qs.filter(cond)
    qs = qs.filter(is_active=True)
    if options.selection == "never":
        return qs.filter(enriched_at__isnull=True)
    if options.selection == "stale":
        cutoff = timezone.now() - timedelta(days=options.stale_days)
        return qs.filter(Q(enriched_at__isnull=True) | Q(enriched_at__lt=cutoff))
    return qs


def sources_resolve(options: EnrichOptions) -> list[str]:
    """Remote providers able to give metadata, in priority order, then the offline
    catalogue and the local reference (where asked)."""
    remote = providers_in_priority(capability="info")
    if options.sources is None:
        return [*remote, *OFFLINE_SOURCES]
    # Named sources keep the providers' priority order, not the order typed.
    chosen = [code for code in remote if code in options.sources]
    return [*chosen, *(code for code in OFFLINE_SOURCES if code in options.sources)]


# -- asking the sources about a batch -----------------------------------------------------------
def _failure_report(provider_symbol: str, exc: ProviderError) -> SourceReport:
    if exc.reason in UNKNOWN_SYMBOL:
        status = SourceStatus.EMPTY
    elif exc.reason in NOT_ASKED:
        status = SourceStatus.UNAVAILABLE
    else:
        status = SourceStatus.FAILED
    return SourceReport(status=status, provider_symbol=provider_symbol, error=exc.message)


def _info_report(info: AssetInfo) -> SourceReport:
    values = info.known()
    return SourceReport(
        status=_status_of(values),
        provider_symbol=info.provider_symbol,
        values=values,
        data_version=str(info.extra.get("data_version", "")),
    )


def _status_of(values: dict[str, Any]) -> SourceStatus:
    return SourceStatus.OK if values else SourceStatus.EMPTY


def _ask_remote(client, spelled: dict[int, str], delay: float) -> dict[int, SourceReport]:
    """One provider about every symbol of a batch it has a spelling for, in as few calls as
    its API allows; each symbol gets its own report (a partly failed batch stays exact)."""
    answer = client.fetch_assets_info(provider_symbols=list(spelled.values()))
    if delay:
        time.sleep(delay)
    return {
        symbol_id: _info_report(answer.infos[provider_symbol])
        if provider_symbol in answer.infos
        else _failure_report(provider_symbol, answer.errors[provider_symbol])
        for symbol_id, provider_symbol in spelled.items()
    }


def _ask_offline(code: str, batch: list[Symbol]) -> dict[int, SourceReport]:
    if code == LOCAL_REFERENCE:
        return {s.pk: SourceReport(status=_status_of(v), values=v) for s in batch for v in [local_info(s).known()]}
    spelled = {s.pk: mapping_infer(symbol=s, provider_code="YAHOO_FINANCE") or s.ticker for s in batch}
    known = catalogue_infos(list(spelled.values()))
    unknown = SourceStatus.EMPTY
    return {
        pk: _info_report(known[name]) if name in known else SourceReport(status=unknown, provider_symbol=name)
        for pk, name in spelled.items()
    }


@dataclass(slots=True)
class _RunClients:
    """One client per remote source for the whole run (so Binance's exchangeInfo and Yahoo's
    crumb are fetched once); a source is asked by one thread at a time."""

    options: EnrichOptions
    client_options: dict | None
    clients: dict[str, Any] = field(default_factory=dict)

    def get(self, code: str):
        if code not in self.clients:
            extra = {"max_attempts": self.options.max_retries}
            if self.options.timeout:
                extra["timeout"] = self.options.timeout
            self.clients[code] = get_client(code, **extra, **(self.client_options or {}))
        return self.clients[code]


def _ask_source(code: str, batch: list[Symbol], mapped, clients: _RunClients) -> dict[int, SourceReport]:
    if code in OFFLINE_SOURCES:
        return _ask_offline(code, batch)
    spelled = {s.pk: mapped[s.pk][code] for s in batch if mapped[s.pk].get(code)}
    reports = _ask_remote(clients.get(code), spelled, clients.options.rate_limit_delay) if spelled else {}
    return {s.pk: reports.get(s.pk, SourceReport(status=SourceStatus.NOT_APPLICABLE)) for s in batch}


def _work(batch, sources, mapped, clients: _RunClients) -> list[dict[str, SourceReport]]:
    """Ask every source about a batch; the remote ones side by side, up to `concurrency`
    threads, each with its own database connection (the rate limit, circuit and fetch log
    live in the database)."""
    remote = [code for code in sources if code not in OFFLINE_SOURCES]
    by_source: dict[str, dict[int, SourceReport]] = {}
    workers = min(clients.options.concurrency, len(remote))
    if workers <= 1:
        for code in remote:
            by_source[code] = _ask_source(code, batch, mapped, clients)
    else:

        def worker(code: str) -> dict[int, SourceReport]:
            close_old_connections()
            try:
                return _ask_source(code, batch, mapped, clients)
            finally:
                connections.close_all()

        with ThreadPoolExecutor(max_workers=workers) as pool:
            by_source.update(zip(remote, pool.map(worker, remote), strict=True))
    for code in sources:
        if code in OFFLINE_SOURCES:
            by_source[code] = _ask_source(code, batch, mapped, clients)
    return [{code: by_source[code][s.pk] for code in sources} for s in batch]


@dataclass(frozen=True, slots=True)
class MergedFields:
    """New Symbol field values, and their names in order."""

    changes: dict[str, Any]
    names: tuple[str, ...]


def _merge(symbol: Symbol, reports: dict[str, SourceReport], *, overwrite: bool) -> MergedFields:
    """New Symbol field values: the first source in priority order that knows a field wins;
    without `overwrite` only blank fields are filled. An offline source (the catalogue, the
    local reference) fills blank fields only, even with `overwrite`: a run without network
    must never replace what a live provider said."""
    changes: dict[str, Any] = {}
    for provider_field, symbol_field in FIELD_MAP.items():
        source, value = next(
            (
                (code, r.values[provider_field])
                for code, r in reports.items()
                if r.values.get(provider_field) not in (None, "")
            ),
            (None, None),
        )
        if value is None or (symbol_field == "country" and len(str(value)) != 2):
            continue
        if isinstance(value, str) and symbol_field in LIMITS:
            value = value[: LIMITS[symbol_field]]
        current = getattr(symbol, symbol_field)
        if current not in (None, "") and (not overwrite or source in OFFLINE_SOURCES):
            continue
        if current != value:
            changes[symbol_field] = value
    return MergedFields(changes=changes, names=tuple(sorted(changes)))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the reports of one symbol add up to."""

    outcome: AssetEnrichmentResult.Outcome
    remote_ok: bool
    to_dead_letter: bool


def _verdict(reports: dict[str, SourceReport]) -> Verdict:
    """A symbol the catalogue knows is not dead-lettered when the live providers fail: it
    has its static metadata, and every "never enriched" or stale run asks them again."""
    remote = {k: r for k, r in reports.items() if k not in OFFLINE_SOURCES}
    remote_ok = any(r.status == SourceStatus.OK for r in remote.values())
    remote_bad = any(r.status in DID_NOT_ANSWER for r in remote.values())
    any_data = any(r.status == SourceStatus.OK for r in reports.values())
    catalogue_ok = CATALOGUE in reports and reports[CATALOGUE].status == SourceStatus.OK
    if remote_ok and not remote_bad:
        outcome = AssetEnrichmentResult.Outcome.ENRICHED
    elif any_data:
        outcome = AssetEnrichmentResult.Outcome.PARTIAL
    else:
        outcome = AssetEnrichmentResult.Outcome.FAILED
    return Verdict(
        outcome=outcome, remote_ok=remote_ok, to_dead_letter=not remote_ok and remote_bad and not catalogue_ok
    )


# -- the run ---------------------------------------------------------------------------------
def _mapped(batch: list[Symbol], sources: list[str]) -> dict[int, dict[str, str | None]]:
    stored = {
        (m.symbol_id, m.provider.code): m.provider_symbol
        for m in SymbolMapping.objects.filter(symbol__in=batch).select_related("provider")
    }
    return {
        s.pk: {
            code: stored.get((s.pk, code)) or mapping_infer(symbol=s, provider_code=code)
            for code in sources
            if code not in OFFLINE_SOURCES
        }
        for s in batch
    }


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


def _score(symbol: Symbol, reports: dict[str, SourceReport], options: EnrichOptions, now: datetime):
    values = {
        f: getattr(symbol, f)
        for f in (
            "name",
            "sector",
            "industry",
            "country",
            "quote_currency",
            "market_cap",
            "description",
            "website",
            "category",
        )
    }
    return metadata_score.quality_score(
        values=values,
        kind={"crypto": "crypto", "fx": "fx", "bist": "stock", "us": "stock"}.get(symbol_kind(symbol), "other"),
        enriched_at=symbol.enriched_at,
        reports=[r.values for k, r in reports.items() if r.status == SourceStatus.OK and k != LOCAL_REFERENCE],
        now=now,
        stale_days=options.stale_days,
    )


def _symbol_outcome(
    symbol: Symbol, reports: dict[str, SourceReport], options: EnrichOptions, now: datetime
) -> SymbolOutcome:
    """Apply the merged fields and the score to `symbol` (in memory) and dead-letter it if
    every remote source failed."""
    merged = _merge(symbol, reports, overwrite=options.overwrite)
    verdict = _verdict(reports)
    for name, value in merged.changes.items():
        setattr(symbol, name, value)
    if verdict.remote_ok:
        symbol.enriched_at = now
    symbol.enrichment_attempted_at = now
    score = _score(symbol, reports, options, now)
    symbol.data_quality_score = score.score
    error = "; ".join(f"{k}: {r.error}" for k, r in reports.items() if r.status in DID_NOT_ANSWER)
    created_dead_letter = False
    if verdict.to_dead_letter and options.dead_letter:
        sources = {k: {"status": r.status, "error": r.error} for k, r in reports.items()}
        created_dead_letter = _dead_letter(symbol, error, options, sources)
    return SymbolOutcome(
        symbol_id=symbol.pk,
        ref=f"{symbol.ticker}@{symbol.market.code}",
        outcome=verdict.outcome,
        sources=reports,
        fields_updated=merged.names,
        quality=score,
        dead_lettered=created_dead_letter,
        error=error,
        remote_ok=verdict.remote_ok,
    )


def _result_row(run: AssetEnrichmentRun, outcome: SymbolOutcome) -> AssetEnrichmentResult:
    return AssetEnrichmentResult(
        run=run,
        symbol_id=outcome.symbol_id,
        outcome=outcome.outcome,
        sources={
            k: {"status": r.status, "provider_symbol": r.provider_symbol, "error": r.error}
            | ({"data_version": r.data_version} if r.data_version else {})
            for k, r in outcome.sources.items()
        },
        fields_updated=list(outcome.fields_updated),
        quality_score=outcome.quality.score,
        completeness=outcome.quality.completeness,
        freshness=outcome.quality.freshness,
        agreement=outcome.quality.agreement,
        error=outcome.error,
    )


def _apply(batch, reports_list, options: EnrichOptions, run: AssetEnrichmentRun) -> list[SymbolOutcome]:
    """Write a batch back: symbol fields (one bulk UPDATE), per-symbol results (one INSERT),
    dead letters for the symbols every remote source failed, and resolution of old ones."""
    now = timezone.now()
    outcomes = [
        _symbol_outcome(symbol, reports, options, now) for symbol, reports in zip(batch, reports_list, strict=True)
    ]
    changed_fields = {"enrichment_attempted_at", "data_quality_score", "updated_at"}
    for outcome in outcomes:
        changed_fields.update(outcome.fields_updated)
        if outcome.remote_ok:
            changed_fields.add("enriched_at")
    # A symbol that got remote data resolves its open dead letter.
    resolved_refs = [o.ref for o in outcomes if o.remote_ok]
    with transaction.atomic():
        Symbol.objects.bulk_update(batch, sorted(changed_fields))
        AssetEnrichmentResult.objects.bulk_create([_result_row(run, o) for o in outcomes])
        if resolved_refs:
            DeadLetter.objects.filter(kind=DEAD_LETTER_KIND, ref__in=resolved_refs, resolved_at__isnull=True).update(
                resolved_at=now
            )
    return outcomes


def _batch_enrich(ids: list[int], sources: list[str], options, run, clients: _RunClients) -> list[SymbolOutcome]:
    batch = list(Symbol.objects.select_related("market", "asset_class").filter(pk__in=ids).order_by("pk"))
    # Store the inferred spellings (ON CONFLICT DO NOTHING) so the mapping editor shows them.
    mappings_ensure(
        symbols=Symbol.objects.filter(pk__in=[s.pk for s in batch]),
        provider_codes=[c for c in sources if c not in OFFLINE_SOURCES],
    )
    reports = _work(batch, sources, _mapped(batch, sources), clients)
    return _apply(batch, reports, options, run)


@dataclass(slots=True)
class _Tally:
    """What a run has done so far (mutable while it goes; kept when it is cancelled)."""

    outcomes: list[SymbolOutcome] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))


def _run_batches(
    tally: _Tally,
    ids: list[int],
    sources: list[str],
    options: EnrichOptions,
    run: AssetEnrichmentRun,
    *,
    reporter: ProgressReporter,
    client_options: dict | None,
) -> None:
    """Enrich batch by batch, counting into `tally`; raises Cancelled between batches when asked."""
    clients = _RunClients(options=options, client_options=client_options)
    for start in range(0, len(ids), options.batch_size):
        done = _batch_enrich(ids[start : start + options.batch_size], sources, options, run, clients)
        tally.outcomes.extend(done)
        for o in done:
            tally.counts[o.outcome] += 1
            asset_enrichment_symbols.labels(outcome=o.outcome).inc()
            tally.counts["dead_lettered"] += int(o.dead_lettered)
        AssetEnrichmentRun.objects.filter(pk=run.pk).update(**tally.counts)
        reporter.advance(len(done))


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
    tally = _Tally()
    cancelled = False
    try:
        ids = list(symbols_qs.values_list("pk", flat=True))
        _run_batches(tally, ids, sources, options, run, reporter=reporter, client_options=client_options)
    except Cancelled:
        cancelled = True
    except Exception as exc:
        AssetEnrichmentRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        summary = f"Asset enrichment run #{run.pk} failed: {type(exc).__name__}: {exc}"
        run_failure_notify(kind="asset_enrichment", run_id=run.pk, summary=summary)
        raise
    finally:
        if progress is None:
            reporter.close()
    AssetEnrichmentRun.objects.filter(pk=run.pk).update(
        status=RunStatus.CANCELLED if cancelled else RunStatus.SUCCEEDED, finished_at=timezone.now(), **tally.counts
    )
    return EnrichResult(
        run_id=run.pk,
        total=total,
        sources=tuple(sources),
        cancelled=cancelled,
        outcomes=tuple(tally.outcomes),
        **tally.counts,
    )


def asset_enrichment_queue(*, options: EnrichOptions, requested_by: str) -> AssetEnrichmentRun:
    """Record a queued run and hand it to a django-q2 worker once the row is committed."""
    options.check()
    run = AssetEnrichmentRun.objects.create(options=options.to_dict(), requested_by=requested_by)
    transaction.on_commit(partial(async_task, "enrichment.assets.tasks.assets_enrich", run.pk, group="enrichment"))
    return run


def asset_enrichment_runs_cancel(*, runs: QuerySet[AssetEnrichmentRun]) -> int:
    """Ask the queued or running ones among `runs` to stop between batches; return how many were asked."""
    return runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(cancel_requested=True)


# -- pipeline step -----------------------------------------------------------------------------------
def enrich_step(*, options: dict, progress: ProgressReporter | None = None) -> dict[str, Any]:
    """The orchestrator's "enrich" step: never-enriched symbols by default. Offline
    (no network, no keys) it still succeeds: remote providers fail fast behind their
    circuits and the local reference data fills what it can."""
    refresh_schedule_ensure()
    step_options = {k.removeprefix("enrich_"): v for k, v in (options or {}).items() if k.startswith("enrich_")}
    result = assets_enrich(options=EnrichOptions.from_dict(step_options), requested_by="pipeline", progress=progress)
    return {k: v for k, v in result.to_dict(details=0).items() if k != "symbols"}
