"""Symbol synchronisation: every (ticker, market) in `market_data` gets a
symbol, and every candle gets linked to it.

The work is set-based. One GROUP BY finds the distinct unlinked pairs; the
pure `etl.inference` module reads each *pair* (tens of thousands at most,
never each candle); then, batch by batch, one `INSERT … SELECT DISTINCT ON …
ON CONFLICT DO NOTHING` creates the missing symbols and one `UPDATE
market_data … FROM symbols` links the candles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import uuid4

from django.db import connection, transaction
from django.utils.translation import gettext

from etl import locks
from etl.errors import DomainError
from etl.inference import KNOWN_ETFS, Inference, canonical_market, infer_symbol, normalize_ticker
from etl.metrics import candles_linked, symbols_created
from etl.models import AssetClass, DataCorrection, Market, Symbol, SymbolSource
from etl.progress import ProgressReporter
from etl.queue import QueuedTask, queue_on_commit
from etl.selectors import integrity_status
from etl.services.integrity import integrity_snapshot_take, quality_gates_check
from etl.sqlarrays import int_array, text_array
from etl.summaries import SYMBOL_WITHOUT_CANDLES_SQL, summary_read, unlinked_pairs_read

UNRESOLVED_LISTED = 100
ANALYZE_AFTER = 1000


@dataclass(frozen=True, slots=True)
class SyncPlanEntry:
    """One symbol the sync creates (or, in a dry run, would create)."""

    ticker: str
    market: str
    asset_class: str | None
    base_currency: str
    quote_currency: str
    confidence: float
    reason: str
    candles: int


@dataclass(frozen=True, slots=True)
class SyncResult:
    dry_run: bool
    pairs_found: int
    symbols_created: int
    symbols_updated: int
    candles_linked: int
    candles_without_symbol: int
    filtered_out: int
    unresolved_count: int
    batches: int
    timed_out: bool
    duration_seconds: float
    unresolved: list[dict[str, Any]] = field(default_factory=list)
    planned: list[SyncPlanEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Pair:
    raw_ticker: str
    raw_market: str
    candles: int
    inference: Inference
    market_id: int
    asset_class_id: int | None


@dataclass(frozen=True, slots=True)
class _SyncPlan:
    pairs: list[_Pair]
    unresolved: list[dict[str, Any]]
    filtered_out: int


@dataclass(frozen=True, slots=True)
class _BatchWrite:
    created: int
    updated: int


@dataclass(frozen=True, slots=True)
class _PhaseOutcome:
    rows: int
    batches: int
    timed_out: bool
    updated: int = 0


@dataclass(frozen=True, slots=True)
class SymbolLink:
    """What a candle of a (ticker, market) pair is stored with: its symbol and that symbol's asset class."""

    symbol_id: int
    asset_class: str | None


@dataclass(frozen=True, slots=True)
class EnsureResult:
    """`links` maps each raw (ticker, market) pair that inference could place to its symbol;
    the others are in `unresolved` (with the sync's reason) and stay unlinked."""

    links: dict[tuple[str, str], SymbolLink]
    created: int
    updated: int
    unresolved: list[dict[str, Any]]


def _matches_class(asset_class: str | None, wanted: Sequence[str]) -> bool:
    # "STOCK" in a filter means every stock class (STOCK_BIST, STOCK_NASDAQ, ...).
    if asset_class is None:
        return False
    return any(asset_class == w or asset_class.startswith(w + "_") for w in wanted)


def _discover(*, skip_existing: bool) -> list[tuple[str, str, int]]:
    with connection.cursor() as cur:
        if skip_existing:
            # Served by the partial index market_data_unlinked.
            cur.execute("SELECT ticker, market, count(*) FROM market_data WHERE symbol_id IS NULL GROUP BY 1, 2")
        else:
            cur.execute("SELECT ticker, market, count(*) FROM market_data GROUP BY 1, 2")
        return cur.fetchall()


def _known_etfs() -> frozenset[str]:
    listed = Symbol.objects.filter(asset_class__code="ETF").values_list("ticker", flat=True)
    return KNOWN_ETFS | {normalize_ticker(t) for t in listed}


def _plan(
    rows: Iterable[tuple[str, str, int]],
    *,
    asset_classes: Sequence[str] | None,
    venues: Sequence[str] | None,
) -> _SyncPlan:
    """Infer each pair's symbol and keep those the filters let through, in a stable order."""
    markets = {m.code: m for m in Market.objects.select_related("default_asset_class")}
    class_ids = dict(AssetClass.objects.values_list("code", "id"))
    other_markets = {
        code: (m.default_asset_class.code if m.default_asset_class else None, m.currency) for code, m in markets.items()
    }
    etfs = _known_etfs()
    wanted_venues = {canonical_market(v) or normalize_ticker(v) for v in venues or ()}
    wanted_classes = [normalize_ticker(c) for c in asset_classes or ()]
    pairs: list[_Pair] = []
    unresolved: list[dict[str, Any]] = []
    filtered = 0
    for raw_ticker, raw_market, candles in rows:
        inf = infer_symbol(raw_ticker, raw_market, known_etfs=etfs, other_markets=other_markets)
        market = markets.get(inf.market or "")
        if not inf.resolved or market is None:
            reason = (
                inf.reason
                if not inf.resolved
                else gettext("market %(market)s is not in the reference data") % {"market": inf.market}
            )
            unresolved.append({"ticker": raw_ticker, "market": raw_market, "candles": candles, "reason": reason})
            continue
        if wanted_venues and inf.market not in wanted_venues:
            filtered += 1
            continue
        if wanted_classes and not _matches_class(inf.asset_class, wanted_classes):
            filtered += 1
            continue
        pairs.append(_Pair(raw_ticker, raw_market, candles, inf, market.id, class_ids.get(inf.asset_class or "")))
    # Same order in every concurrent sync, so their batches meet the same rows in the same order.
    pairs.sort(key=lambda p: (p.market_id, p.inference.ticker, p.raw_market, p.raw_ticker))
    unresolved.sort(key=lambda u: -u["candles"])
    return _SyncPlan(pairs=pairs, unresolved=unresolved, filtered_out=filtered)


def _existing_keys(pairs: Sequence[_Pair]) -> set[tuple[str, int]]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT s.ticker, s.market_id FROM symbols s"
            " JOIN unnest(%s::text[], %s::bigint[]) AS v(ticker, market_id)"
            " ON s.ticker = v.ticker AND s.market_id = v.market_id",
            [[p.inference.ticker for p in pairs], [p.market_id for p in pairs]],
        )
        return set(cur.fetchall())


def _plan_entries(pairs: Sequence[_Pair], market_codes: dict[int, str]) -> list[SyncPlanEntry]:
    existing = _existing_keys(pairs)
    by_key: dict[tuple[str, int], SyncPlanEntry] = {}
    for p in pairs:
        key = (p.inference.ticker, p.market_id)
        if key in existing:
            continue
        prev = by_key.get(key)
        inf = p.inference
        by_key[key] = SyncPlanEntry(
            ticker=inf.ticker,
            market=market_codes[p.market_id],
            asset_class=inf.asset_class,
            base_currency=inf.base_currency,
            quote_currency=inf.quote_currency,
            confidence=inf.confidence,
            reason=inf.reason,
            candles=p.candles + (prev.candles if prev else 0),
        )
    return list(by_key.values())


_INSERT_SQL = """
INSERT INTO symbols (
    ticker, market_id, asset_class_id, base_currency, quote_currency, inference_confidence,
    source, is_active, name, sector, industry, country, description, website, category,
    created_at, updated_at
)
SELECT DISTINCT ON (v.ticker, v.market_id)
    v.ticker, v.market_id, v.asset_class_id, v.base, v.quote, v.confidence,
    %s, TRUE, '', '', '', '', '', '', '', now(), now()
FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::float8[])
    AS v(ticker, market_id, asset_class_id, base, quote, confidence)
ORDER BY v.ticker, v.market_id, v.confidence DESC
ON CONFLICT (ticker, market_id) DO NOTHING
"""

# Fills only what is empty: operators' edits and enrichment results stay.
_FILL_SQL = """
UPDATE symbols s SET
    asset_class_id = COALESCE(s.asset_class_id, v.asset_class_id),
    base_currency = CASE WHEN s.base_currency = '' THEN v.base ELSE s.base_currency END,
    quote_currency = CASE WHEN s.quote_currency = '' THEN v.quote ELSE s.quote_currency END,
    inference_confidence = COALESCE(s.inference_confidence, v.confidence),
    updated_at = now()
FROM (
    SELECT DISTINCT ON (ticker, market_id) *
    FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::float8[])
        AS u(ticker, market_id, asset_class_id, base, quote, confidence)
    ORDER BY ticker, market_id, confidence DESC
) v
WHERE s.ticker = v.ticker AND s.market_id = v.market_id
  AND ((s.asset_class_id IS NULL AND v.asset_class_id IS NOT NULL)
       OR (s.base_currency = '' AND v.base <> '')
       OR (s.quote_currency = '' AND v.quote <> ''))
"""

# updated_at = now(): a linked candle is new to its series, and the feature step finds what
# changed by updated_at (enrichment/candles/services/feature_scan.py); the row is rewritten anyway.
_LINK_SQL = """
UPDATE market_data md SET symbol_id = s.id, updated_at = now()
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) AS v(raw_ticker, raw_market, ticker, market_id)
JOIN symbols s ON s.ticker = v.ticker AND s.market_id = v.market_id
WHERE md.ticker = v.raw_ticker AND md.market = v.raw_market AND {condition}
"""


def _sync_lock() -> None:
    """Serialise the write phase of concurrent syncs, batch by batch. Uniqueness does
    not depend on it (ON CONFLICT does that), but two UPDATEs over the same candles in
    different orders could deadlock, and a waiting sync finds the work done instead."""
    locks.xact_lock(locks.SYMBOL_SYNC)


def _symbols_write(pairs: Sequence[_Pair], *, fill_existing: bool) -> _BatchWrite:
    """The one place symbols are created: the missing ones of `pairs`, in one
    INSERT … ON CONFLICT DO NOTHING under the sync's lock, in its own transaction.
    `fill_existing` also fills the empty inferred fields of those that exist."""
    values = [
        [p.inference.ticker for p in pairs],
        [p.market_id for p in pairs],
        [p.asset_class_id for p in pairs],
        [p.inference.base_currency for p in pairs],
        [p.inference.quote_currency for p in pairs],
        [p.inference.confidence for p in pairs],
    ]
    with transaction.atomic(), connection.cursor() as cur:
        _sync_lock()
        cur.execute(_INSERT_SQL, [SymbolSource.DISCOVERED, *values])
        created = cur.rowcount
        updated = 0
        if fill_existing:
            cur.execute(_FILL_SQL, values)
            updated = cur.rowcount
        symbols_created.inc(created)  # counted with the symbols, whoever asked for them
    return _BatchWrite(created=created, updated=updated)


# One probe of the (ticker, market) unique index per pair (LATERAL … LIMIT 1): as a join, with the
# symbols' statistics behind (100,000 symbols counted as 6,000 after an import created them), the
# planner hashed the whole table for each import group of 500 pairs (16 ms a group at 100,000).
_LOOKUP_SQL = """
SELECT v.raw_ticker, v.raw_market, s.id, s.code
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) AS v(raw_ticker, raw_market, ticker, market_id)
CROSS JOIN LATERAL (
    SELECT s.id, ac.code FROM symbols s LEFT JOIN asset_classes ac ON ac.id = s.asset_class_id
    WHERE s.ticker = v.ticker AND s.market_id = v.market_id
    LIMIT 1
) s
"""


def _symbol_links(pairs: Sequence[_Pair]) -> dict[tuple[str, str], SymbolLink]:
    """The symbols that exist for these pairs (one indexed read)."""
    if not pairs:
        return {}
    with connection.cursor() as cur:
        cur.execute(
            _LOOKUP_SQL,
            [  # array literals (etl.sqlarrays): the import asks for every file's pair
                text_array(p.raw_ticker for p in pairs),
                text_array(p.raw_market for p in pairs),
                text_array(p.inference.ticker for p in pairs),
                int_array(p.market_id for p in pairs),
            ],
        )
        return {(t, m): SymbolLink(symbol_id=sid, asset_class=code) for t, m, sid, code in cur.fetchall()}


def symbols_ensure(*, pairs: Iterable[tuple[str, str]], fill_existing: bool = False) -> EnsureResult:
    """The symbol of every raw (ticker, market) pair, creating the missing ones
    (inferred as the sync infers them; `_symbols_write` under the sync's lock, committed
    on its own). Pairs inference cannot place are reported, not created. Used by the
    import before it writes a group of files, and by the sync for each batch."""
    plan = _plan(((t, m, 0) for t, m in dict.fromkeys(pairs)), asset_classes=None, venues=None)
    links = {} if fill_existing else _symbol_links(plan.pairs)
    missing = [p for p in plan.pairs if (p.raw_ticker, p.raw_market) not in links]
    write = _BatchWrite(created=0, updated=0)
    if missing:
        write = _symbols_write(missing, fill_existing=fill_existing)
        links.update(_symbol_links(missing))
    return EnsureResult(links=links, created=write.created, updated=write.updated, unresolved=plan.unresolved)


def _link_batch(batch: Sequence[_Pair], *, relink: bool) -> int:
    link = [
        [p.raw_ticker for p in batch],
        [p.raw_market for p in batch],
        [p.inference.ticker for p in batch],
        [p.market_id for p in batch],
    ]
    # With skip_existing the candles are the unlinked ones; otherwise also
    # relink candles that point at another symbol than their pair's.
    condition = "md.symbol_id IS DISTINCT FROM s.id" if relink else "md.symbol_id IS NULL"
    with transaction.atomic(), connection.cursor() as cur:
        _sync_lock()
        cur.execute(_LINK_SQL.format(condition=condition), link)
        return cur.rowcount


def candles_without_symbol_count() -> int:
    """From the integrity summaries, not a count of market_data."""
    return summary_read("candles.orphan").total("candles.orphan")


def symbols_sync(
    *,
    batch_size: int = 1000,
    asset_classes: Sequence[str] | None = None,
    venues: Sequence[str] | None = None,
    skip_existing: bool = True,
    max_seconds: float | None = None,
    dry_run: bool = False,
    progress: ProgressReporter | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SyncResult:
    """Create a symbol for every (ticker, market) in `market_data` that has
    none and link every candle to its symbol. Each batch of `batch_size` pairs
    commits on its own; the run stops between batches after `max_seconds`.

    Every missing symbol is created first, then the candles are linked.
    `skip_existing=False` also re-reads pairs whose candles are already
    linked: it fills empty inferred fields of their symbols and relinks
    candles that point elsewhere. `dry_run` lists what would be created and
    writes nothing. `batches` counts the link batches done."""
    if batch_size < 1:
        raise DomainError(gettext("batch_size must be at least 1"), code="invalid_batch_size")
    started = clock()
    rows = _discover(skip_existing=skip_existing)
    plan = _plan(rows, asset_classes=asset_classes, venues=venues)

    def result(created: _PhaseOutcome, linked: _PhaseOutcome, **kw: Any) -> SyncResult:
        return SyncResult(
            pairs_found=len(rows),
            filtered_out=plan.filtered_out,
            unresolved_count=len(plan.unresolved),
            unresolved=plan.unresolved[:UNRESOLVED_LISTED],
            symbols_created=created.rows,
            symbols_updated=created.updated,
            candles_linked=linked.rows,
            candles_without_symbol=candles_without_symbol_count(),
            batches=linked.batches,
            timed_out=created.timed_out or linked.timed_out,
            duration_seconds=round(clock() - started, 3),
            **kw,
        )

    if dry_run:
        nothing = _PhaseOutcome(rows=0, batches=0, timed_out=False)
        market_codes = dict(Market.objects.values_list("id", "code"))
        planned = _plan_entries(plan.pairs, market_codes) if plan.pairs else []
        return result(nothing, nothing, dry_run=True, planned=planned)

    def out_of_time() -> bool:
        return max_seconds is not None and clock() - started >= max_seconds

    if progress is not None:
        progress.set_total(sum(p.candles for p in plan.pairs))
    batches = [plan.pairs[i : i + batch_size] for i in range(0, len(plan.pairs), batch_size)]
    created = _create_symbols(batches, fill_existing=not skip_existing, out_of_time=out_of_time)
    if created.timed_out:
        linked = _PhaseOutcome(rows=0, batches=0, timed_out=False)
    else:
        linked = _link_candles(batches, relink=not skip_existing, out_of_time=out_of_time, progress=progress)
    return result(created, linked, dry_run=False)


def _create_symbols(
    batches: list[list[_Pair]], *, fill_existing: bool, out_of_time: Callable[[], bool]
) -> _PhaseOutcome:
    """Phase 1: every missing symbol, before any candle points at one."""
    created = updated = done = 0
    timed_out = False
    for batch in batches:
        if out_of_time():
            timed_out = True
            break
        write = symbols_ensure(pairs=[(p.raw_ticker, p.raw_market) for p in batch], fill_existing=fill_existing)
        created, updated, done = created + write.created, updated + write.updated, done + 1
    if created > ANALYZE_AFTER:
        # The link phase's deferred foreign-key checks look symbols up by id
        # with a plan cached from the table's statistics; planned on stale
        # "symbols is tiny" figures they scan it once per candle.
        with connection.cursor() as cur:
            cur.execute("ANALYZE symbols")
    return _PhaseOutcome(rows=created, batches=done, timed_out=timed_out, updated=updated)


def _link_candles(
    batches: list[list[_Pair]],
    *,
    relink: bool,
    out_of_time: Callable[[], bool],
    progress: ProgressReporter | None,
) -> _PhaseOutcome:
    """Phase 2: link candles, one batch of pairs per transaction."""
    linked = done = 0
    for batch in batches:
        if out_of_time():
            return _PhaseOutcome(rows=linked, batches=done, timed_out=True)
        n = _link_batch(batch, relink=relink)
        linked, done = linked + n, done + 1
        candles_linked.inc(n)
        if progress is not None:
            progress.advance(sum(p.candles for p in batch))
    return _PhaseOutcome(rows=linked, batches=done, timed_out=False)


def symbols_sync_queue(**options: Any) -> QueuedTask:
    """Queue `symbols_sync(**options)` on the workers once the caller's transaction
    commits. Bad options are refused here, before anything is queued."""
    if int(options.get("batch_size", 1000)) < 1:
        raise DomainError(gettext("batch_size must be at least 1"), code="invalid_batch_size")
    return queue_on_commit("etl.tasks.symbols_sync", group="etl", **options)


def symbols_sync_step(*, options: dict[str, Any], progress: ProgressReporter | None = None) -> dict[str, Any]:
    """Pipeline step "sync": options batch_size, asset_classes, venues,
    skip_existing, max_seconds (the orchestrator passes the time left)."""
    result = symbols_sync(
        batch_size=int(options.get("batch_size") or 1000),
        asset_classes=options.get("asset_classes") or None,
        venues=options.get("venues") or None,
        skip_existing=bool(options.get("skip_existing", True)),
        max_seconds=options.get("max_seconds"),
        progress=progress,
    )
    summary = result.to_dict()
    summary.pop("planned")
    return summary


# ---------------------------------------------------------------------------
# Validation and clean-up


class IssueCode:
    WHITESPACE = "whitespace"
    CASE_VARIANT = "case_variant"
    INACTIVE_MARKET = "inactive_market"
    ACTIVE_WITHOUT_DATA = "active_without_data"
    UNLINKED_CANDLES = "unlinked_candles"

    ALL = (WHITESPACE, CASE_VARIANT, INACTIVE_MARKET, ACTIVE_WITHOUT_DATA, UNLINKED_CANDLES)
    # Deactivating symbols without candles is only done when asked by name:
    # a symbol added by hand may be waiting for its first provider fetch.
    DEFAULT_FIXES = (WHITESPACE, CASE_VARIANT, INACTIVE_MARKET, UNLINKED_CANDLES)


@dataclass(frozen=True, slots=True)
class SymbolIssue:
    code: str
    message: str
    ticker: str
    market: str
    symbol_id: int | None = None
    rows: int = 1
    fixed: bool = False


@dataclass(frozen=True, slots=True)
class SymbolValidationResult:
    fix: bool
    run_ref: str
    issues: list[SymbolIssue]
    counts: dict[str, int]
    fixed: dict[str, int]
    corrections_recorded: int

    @property
    def ok(self) -> bool:
        return all(i.fixed for i in self.issues)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "issue_count": len(self.issues)}


ISSUES_LISTED = 500

_VARIANT_SQL = """
SELECT s.market_id, m.code, upper(regexp_replace(s.ticker, '\\s', '', 'g')) AS canon,
       array_agg(s.id ORDER BY (s.ticker = upper(regexp_replace(s.ticker, '\\s', '', 'g'))) DESC, s.id),
       array_agg(s.ticker ORDER BY (s.ticker = upper(regexp_replace(s.ticker, '\\s', '', 'g'))) DESC, s.id)
FROM symbols s JOIN markets m ON m.id = s.market_id
WHERE s.is_active
GROUP BY 1, 2, 3
HAVING (count(*) > 1 OR bool_or(s.ticker <> upper(regexp_replace(s.ticker, '\\s', '', 'g'))))
   -- a selection takes in every variant of the tickers it touches
   AND (%(ids)s::bigint[] IS NULL OR bool_or(s.id = ANY(%(ids)s)))
ORDER BY 2, 3
"""


def _variant_code(ticker: str) -> str:
    return IssueCode.WHITESPACE if normalize_ticker(ticker) != ticker.upper() else IssueCode.CASE_VARIANT


@dataclass(slots=True)
class _Cleanup:
    """What one validation/clean-up run has found and will record (internal, mutable)."""

    run_ref: str
    requested_by: str
    wanted: set[str]
    scope: dict[str, Any]
    issues: list[SymbolIssue] = field(default_factory=list)
    audit: list[DataCorrection] = field(default_factory=list)

    def record(self, **kw: Any) -> None:
        self.audit.append(
            DataCorrection(kind="symbol_cleanup", run_ref=self.run_ref, created_by=self.requested_by, **kw)
        )

    def report(self, code: str, message: str, ticker: str, market: str, symbol_id: int | None, rows: int = 1) -> bool:
        """Add an issue; whether this kind is to be fixed."""
        fixed = code in self.wanted
        self.issues.append(SymbolIssue(code, message, ticker, market, symbol_id, rows, fixed))
        return fixed


def symbols_validate_cleanup(
    *,
    fix: bool = False,
    fixes: Sequence[str] | None = None,
    symbol_ids: Sequence[int] | None = None,
    requested_by: str = "",
) -> SymbolValidationResult:
    """Report symbols with stray whitespace or case variants of one ticker,
    active symbols on inactive markets or without candles, and candles
    without a symbol. With `fix`, repair the kinds named in `fixes` (default
    `IssueCode.DEFAULT_FIXES`) and record every change in `data_corrections`,
    in the same transaction as the change. `symbol_ids` limits the symbol
    checks to those symbols."""
    cleanup = _Cleanup(
        run_ref=f"symbol-cleanup:{uuid4().hex[:12]}",
        requested_by=requested_by,
        wanted=_wanted_fixes(fix=fix, fixes=fixes),
        scope={"ids": list(symbol_ids) if symbol_ids is not None else None},
    )
    with transaction.atomic(), connection.cursor() as cur:
        _clean_variants(cur, cleanup)
        _clean_inactive_market(cur, cleanup)
        _clean_without_candles(cur, cleanup)
        DataCorrection.objects.bulk_create(cleanup.audit)
    if symbol_ids is None:
        _clean_unlinked_candles(cleanup)
    return _validation_result(fix=fix, cleanup=cleanup)


def _wanted_fixes(*, fix: bool, fixes: Sequence[str] | None) -> set[str]:
    wanted = set(fixes if fixes is not None else IssueCode.DEFAULT_FIXES) if fix else set()
    unknown = wanted - set(IssueCode.ALL)
    if unknown:
        raise DomainError(
            gettext("unknown fix %(unknown)s; choose from %(known)s")
            % {"unknown": sorted(unknown), "known": list(IssueCode.ALL)},
            code="invalid_fix",
        )
    return wanted


def _clean_variants(cur, cleanup: _Cleanup) -> None:
    """Whitespace and case variants: one active symbol per canonical ticker and market.
    The keeper is renamed to the canonical ticker; the others' candles move to it."""
    cur.execute(_VARIANT_SQL, cleanup.scope)
    renames: list[tuple[int, str]] = []
    merges: list[_Merge] = []
    for _market_id, market_code, canon, ids, tickers in cur.fetchall():
        keeper_id, keeper_ticker = ids[0], tickers[0]
        if keeper_ticker != canon:
            message = gettext("%(ticker)s should be %(canonical)s") % {
                "ticker": repr(keeper_ticker),
                "canonical": repr(canon),
            }
            if cleanup.report(_variant_code(keeper_ticker), message, canon, market_code, keeper_id):
                renames.append((keeper_id, canon))
                cleanup.record(
                    table_name="symbols",
                    ticker=canon,
                    market=market_code,
                    field="ticker",
                    old_value=keeper_ticker,
                    new_value=canon,
                    detail={"symbol_id": keeper_id},
                )
        for dup_id, dup_ticker in zip(ids[1:], tickers[1:], strict=True):
            message = gettext("%(ticker)s duplicates %(canonical)s") % {
                "ticker": repr(dup_ticker),
                "canonical": repr(canon),
            }
            if cleanup.report(_variant_code(dup_ticker), message, canon, market_code, dup_id):
                merges.append(_Merge(dup_id, keeper_id, canon, market_code))
    if merges:
        _merge_duplicates(cur, merges, cleanup)
    if renames:
        cur.execute(
            "UPDATE symbols s SET ticker = v.ticker, updated_at = now()"
            " FROM unnest(%s::bigint[], %s::text[]) AS v(id, ticker) WHERE s.id = v.id",
            [[i for i, _ in renames], [t for _, t in renames]],
        )


@dataclass(frozen=True, slots=True)
class _Merge:
    duplicate_id: int
    keeper_id: int
    ticker: str
    market: str


def _merge_duplicates(cur, merges: list[_Merge], cleanup: _Cleanup) -> None:
    """Relink the duplicates' candles to their keepers and deactivate the duplicates."""
    dups, keepers = [m.duplicate_id for m in merges], [m.keeper_id for m in merges]
    cur.execute(
        "SELECT m.dup, count(md.id) FROM unnest(%s::bigint[]) AS m(dup)"
        " LEFT JOIN market_data md ON md.symbol_id = m.dup GROUP BY m.dup",
        [dups],
    )
    moved = dict(cur.fetchall())
    cur.execute(
        "UPDATE market_data md SET symbol_id = m.keeper, updated_at = now()"  # new to the keeper's series
        " FROM unnest(%s::bigint[], %s::bigint[]) AS m(dup, keeper) WHERE md.symbol_id = m.dup",
        [dups, keepers],
    )
    cur.execute("UPDATE symbols SET is_active = FALSE, updated_at = now() WHERE id = ANY(%s)", [dups])
    for merge in merges:
        relinked = moved.get(merge.duplicate_id, 0)
        cleanup.record(
            table_name="symbols",
            ticker=merge.ticker,
            market=merge.market,
            field="symbol_id",
            old_value=str(merge.duplicate_id),
            new_value=str(merge.keeper_id),
            row_count=relinked,
            detail={"merged_into": merge.keeper_id, "deactivated": merge.duplicate_id, "candles_relinked": relinked},
        )


def _clean_inactive_market(cur, cleanup: _Cleanup) -> None:
    cur.execute(
        "SELECT s.id, s.ticker, m.code FROM symbols s JOIN markets m ON m.id = s.market_id"
        " WHERE s.is_active AND NOT m.is_active AND (%(ids)s::bigint[] IS NULL OR s.id = ANY(%(ids)s))"
        " ORDER BY m.code, s.ticker",
        cleanup.scope,
    )
    _deactivate(cur, cur.fetchall(), IssueCode.INACTIVE_MARKET, gettext("market {market} is inactive"), cleanup)


def _clean_without_candles(cur, cleanup: _Cleanup) -> None:
    # Whether a symbol has candles is read from its summary tallies, not from market_data.
    cur.execute(
        "SELECT s.id, s.ticker, m.code FROM symbols s JOIN markets m ON m.id = s.market_id"  # noqa: S608 - constant
        f" WHERE s.is_active AND {SYMBOL_WITHOUT_CANDLES_SQL}"
        " AND (%(ids)s::bigint[] IS NULL OR s.id = ANY(%(ids)s)) ORDER BY m.code, s.ticker",
        cleanup.scope,
    )
    _deactivate(cur, cur.fetchall(), IssueCode.ACTIVE_WITHOUT_DATA, gettext("active without candles"), cleanup)


def _clean_unlinked_candles(cleanup: _Cleanup) -> None:
    """Candles without a symbol, linked by the symbol sync when that fix is wanted.
    Outside the clean-up's transaction: the sync commits batch by batch, and its
    audit row is written (in its own transaction) once it has run."""
    unlinked = unlinked_pairs_read()
    if not unlinked:
        return
    linked_by_sync = 0
    if IssueCode.UNLINKED_CANDLES in cleanup.wanted:
        sync = symbols_sync()
        linked_by_sync = sync.candles_linked
        cleanup.record(
            table_name="market_data",
            field="symbol_id",
            old_value=None,
            new_value="linked by symbol sync",
            row_count=sync.candles_linked,
            detail={"symbols_created": sync.symbols_created, "still_unlinked": sync.candles_without_symbol},
        )
        DataCorrection.objects.bulk_create(cleanup.audit[-1:])
    remaining = _unlinked_pairs() if linked_by_sync else set()
    for ticker, market, n in unlinked:
        fixed = linked_by_sync > 0 and (ticker, market) not in remaining
        cleanup.issues.append(
            SymbolIssue(
                IssueCode.UNLINKED_CANDLES,
                gettext("%(count)s candle(s) without a symbol") % {"count": n},
                ticker,
                market,
                None,
                n,
                fixed,
            )
        )


def _validation_result(*, fix: bool, cleanup: _Cleanup) -> SymbolValidationResult:
    counts = {code: 0 for code in IssueCode.ALL}
    fixed_counts = {code: 0 for code in IssueCode.ALL}
    for issue in cleanup.issues:
        counts[issue.code] += 1
        fixed_counts[issue.code] += issue.fixed
    return SymbolValidationResult(
        fix=fix,
        run_ref=cleanup.run_ref if cleanup.audit else "",
        issues=cleanup.issues[:ISSUES_LISTED],
        counts=counts,
        fixed=fixed_counts,
        corrections_recorded=len(cleanup.audit),
    )


def _unlinked_pairs() -> set[tuple[str, str]]:
    return {(ticker, market) for ticker, market, _ in unlinked_pairs_read()}


def _deactivate(cur, rows: list[tuple[int, str, str]], code: str, message: str, cleanup: _Cleanup) -> None:
    """Report each row as an issue; deactivate them all at once when this kind is to be fixed."""
    fixing = code in cleanup.wanted
    for symbol_id, ticker, market in rows:
        cleanup.report(code, message.format(market=market), ticker, market, symbol_id)
        if fixing:
            cleanup.record(
                table_name="symbols",
                ticker=ticker,
                market=market,
                field="is_active",
                old_value="True",
                new_value="False",
                detail={"symbol_id": symbol_id, "reason": code},
            )
    if fixing and rows:
        cur.execute(
            "UPDATE symbols SET is_active = FALSE, updated_at = now() WHERE id = ANY(%s)", [[r[0] for r in rows]]
        )


def symbols_validate_step(*, options: dict[str, Any], progress: ProgressReporter | None = None) -> dict[str, Any]:
    """Pipeline step "validate": report symbol problems (fix them when the
    pipeline option `clean_symbols` is set) and the data-integrity status."""
    result = symbols_validate_cleanup(
        fix=bool(options.get("clean_symbols", False)), requested_by=options.get("requested_by", "pipeline")
    )
    status = integrity_status()
    integrity_snapshot_take()  # every validated run adds a point to the dashboard's trends
    gates = quality_gates_check(overall=status["overall"], overrides=options.get("gates"))
    return {
        "issues": result.counts,
        "fixed": result.fixed,
        "corrections_recorded": result.corrections_recorded,
        "candles_without_symbol": status["overall"]["candles_without_symbol"],
        "asset_class_consistency": status["overall"]["asset_class_consistency"],
        "overall_quality": status["overall"]["overall_quality"],
        **gates.to_dict(),
        # What the orchestrator acts on: an error gate fails the step, a warning gate warns the run.
        "breached": [g.describe() for g in gates.errors],
        "warnings": [g.describe() for g in gates.warnings],
    }
