"""Writes and runs of the core: reference-data bootstrap and validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils.translation import gettext
from django_q.models import Schedule

from etl import locks
from etl import reference_data as ref
from etl.metrics import bootstrap_runs
from etl.models import AssetClass, DataProvider, Market, Symbol, TradingSession
from etl.queue import QueuedTask, queue_on_commit
from etl.selectors import CANDLE_CATEGORIES
from etl.summaries import summary_read


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    created: dict[str, int]
    updated: dict[str, int]
    unchanged: dict[str, int]

    @property
    def total_created(self) -> int:
        return sum(self.created.values())

    @property
    def total_updated(self) -> int:
        return sum(self.updated.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_created": self.total_created, "total_updated": self.total_updated}


@dataclass(frozen=True, slots=True)
class TableCounts:
    created: int
    updated: int
    unchanged: int


# Reference tables of other apps that bootstrap fills too: name -> fn(overwrite=...) -> TableCounts.
# Registered from their AppConfig.ready() (etl imports no other app).
_EXTRA_TABLES: dict[str, Callable[..., TableCounts]] = {}


def register_bootstrap_table(name: str, ensure: Callable[..., TableCounts]) -> None:
    """Have bootstrap call `ensure(overwrite=...)` in its transaction and report its counts under `name`."""
    _EXTRA_TABLES[name] = ensure


def rows_sync(model, rows: list[dict], *, key: tuple[str, ...], overwrite: bool, existing: dict) -> TableCounts:
    """Create rows missing by `key` (`existing`: key tuple -> object); with
    `overwrite`, reset differing fields. Left alone otherwise: operators' edits stay."""
    to_create, to_update, fields_changed = [], [], set()
    for row in rows:
        k = tuple(row[f] for f in key)
        obj = existing.get(k)
        if obj is None:
            to_create.append(model(**row))
            continue
        if not overwrite:
            continue
        changed = [f for f, v in row.items() if getattr(obj, f) != v]
        if changed:
            for f in changed:
                setattr(obj, f, row[f])
            fields_changed.update(changed)
            to_update.append(obj)
    model.objects.bulk_create(to_create)
    if to_update:
        model.objects.bulk_update(to_update, sorted(fields_changed | {"updated_at"}))
    return TableCounts(len(to_create), len(to_update), len(rows) - len(to_create) - len(to_update))


def reference_data_bootstrap(*, overwrite: bool = False) -> BootstrapResult:
    """Create missing asset classes, markets, sessions and providers. Existing
    records (and operators' edits to them) are left alone unless `overwrite`."""
    created: dict[str, int] = {}
    updated: dict[str, int] = {}
    unchanged: dict[str, int] = {}

    def record(name: str, counts: TableCounts) -> None:
        created[name], updated[name], unchanged[name] = counts.created, counts.updated, counts.unchanged

    with transaction.atomic():
        locks.xact_lock(locks.BOOTSTRAP)  # serialises bootstraps across processes and hosts

        existing = {(o.code,): o for o in AssetClass.objects.all()}
        record(
            "asset_classes",
            rows_sync(AssetClass, ref.ASSET_CLASSES, key=("code",), overwrite=overwrite, existing=existing),
        )

        classes = {o.code: o for o in AssetClass.objects.all()}
        market_rows = [{**m, "default_asset_class": classes[m["default_asset_class"]]} for m in ref.MARKETS]
        existing = {(o.code,): o for o in Market.objects.all()}
        record("markets", rows_sync(Market, market_rows, key=("code",), overwrite=overwrite, existing=existing))

        markets = {o.code: o for o in Market.objects.all()}
        session_rows = [{**s, "market": markets[code]} for code, rows in ref.SESSIONS.items() for s in rows]
        existing = {(o.market, o.name, o.start_weekday): o for o in TradingSession.objects.select_related("market")}
        record(
            "trading_sessions",
            rows_sync(
                TradingSession,
                session_rows,
                key=("market", "name", "start_weekday"),
                overwrite=overwrite,
                existing=existing,
            ),
        )

        existing = {(o.code,): o for o in DataProvider.objects.all()}
        record(
            "data_providers",
            rows_sync(DataProvider, ref.PROVIDERS, key=("code",), overwrite=overwrite, existing=existing),
        )

        record("schedules", _ensure_schedules(ref.SCHEDULES, overwrite))
        for name, ensure in _EXTRA_TABLES.items():
            record(name, ensure(overwrite=overwrite))

    result = BootstrapResult(created=created, updated=updated, unchanged=unchanged)
    bootstrap_runs.labels(result="changed" if result.total_created or result.total_updated else "unchanged").inc()
    return result


def reference_data_bootstrap_queue(*, overwrite: bool = False) -> QueuedTask:
    """Queue `reference_data_bootstrap` on the workers once the caller's transaction commits."""
    return queue_on_commit("etl.tasks.reference_data_bootstrap", overwrite, group="etl")


def _ensure_schedules(rows: list[dict], overwrite: bool) -> TableCounts:
    """django-q2 schedules the product needs, keyed by name; an operator's
    edits in the admin are kept unless `overwrite`."""

    created = updated = 0
    for row in rows:
        schedule = Schedule.objects.filter(name=row["name"]).first()
        if schedule is None:
            Schedule.objects.create(schedule_type=Schedule.CRON, **row)
            created += 1
        elif overwrite and any(getattr(schedule, k) != v for k, v in row.items()):
            Schedule.objects.filter(pk=schedule.pk).update(schedule_type=Schedule.CRON, **row)
            updated += 1
    return TableCounts(created, updated, len(rows) - created - updated)


@dataclass(frozen=True, slots=True)
class Problem:
    severity: str  # "error" | "warning"
    code: str
    message: str
    object: str = ""


@dataclass(frozen=True, slots=True)
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problem_count": len(self.problems), "problems": [asdict(p) for p in self.problems]}


def reference_data_validate() -> ValidationReport:
    """Report inconsistencies in the reference data; changes nothing."""
    problems: list[Problem] = []
    for market in Market.objects.filter(is_active=True).exclude(
        Exists(TradingSession.objects.filter(market=OuterRef("pk"), is_active=True))
    ):
        problems.append(
            Problem(
                "error",
                "market_without_session",
                gettext("Market %(market)s has no active trading session") % {"market": market.code},
                market.code,
            )
        )
    for code in ref.MARKETS:
        if not Market.objects.filter(code=code["code"]).exists():
            problems.append(
                Problem(
                    "warning",
                    "market_missing",
                    gettext("Market %(market)s is not in the reference data") % {"market": code["code"]},
                    code["code"],
                )
            )
    inactive = Symbol.objects.filter(is_active=True, market__is_active=False).select_related("market")
    for sym in inactive[:100]:
        problems.append(
            Problem(
                "warning",
                "symbol_on_inactive_market",
                gettext("Active symbol %(ticker)s is on inactive market %(market)s")
                % {"ticker": sym.ticker, "market": sym.market.code},
                str(sym),
            )
        )
    for provider in DataProvider.objects.filter(is_enabled=True, requires_api_key=True):
        if not provider.has_api_key:
            problems.append(
                Problem(
                    "error",
                    "provider_without_key",
                    gettext("Provider %(provider)s is enabled but %(provider)s_API_KEY is not set in the environment")
                    % {"provider": provider.code},
                    provider.code,
                )
            )
    return ValidationReport(problems=problems)


def bootstrap_status() -> dict[str, Any]:
    """What reference data is present against what bootstrap would create."""
    expected = {
        "asset_classes": (AssetClass, [r["code"] for r in ref.ASSET_CLASSES]),
        "markets": (Market, [r["code"] for r in ref.MARKETS]),
        "data_providers": (DataProvider, [r["code"] for r in ref.PROVIDERS]),
    }
    tables: dict[str, Any] = {}
    for name, (model, codes) in expected.items():
        present = set(model.objects.values_list("code", flat=True))
        tables[name] = {
            "count": len(present),
            "expected": len(codes),
            "missing": [c for c in codes if c not in present],
        }
    tables["trading_sessions"] = {"count": TradingSession.objects.count()}
    # The two big tables' counts come from the integrity summaries: exact, and no count(*).
    values = summary_read("candles.", "symbols.total")
    tables["symbols"] = {"count": values.total("symbols.total")}
    tables["market_data"] = {"count": sum(values.total(m) for m in CANDLE_CATEGORIES)}
    complete = all(not t.get("missing") for t in tables.values())
    return {"complete": complete, "tables": tables}


def bootstrap_step(*, options: dict[str, Any], progress=None) -> dict[str, Any]:
    """Pipeline step: bootstrap with the pipeline's `overwrite` option."""
    return reference_data_bootstrap(overwrite=bool(options.get("overwrite", False))).to_dict()
