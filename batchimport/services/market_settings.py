"""Per-market import settings: batch size, concurrency, SLA, expected rate, priority.

One row per market in `import_market_settings`, created by the reference-data
bootstrap with the old system's figures (batchimport.markets.MARKETS) and edited
by operators in the admin. Every door that starts an import — the admin's form,
the API, the command, schedules, the pipeline's step — reaches
`import_job_create`, which asks `market_import_defaults` for what the request
did not say; a value the request gives wins for that job.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from batchimport.markets import MARKETS, market_spec
from batchimport.models import MarketImportSettings
from etl.services.reference import TableCounts, rows_sync

SETTING_FIELDS = ("batch_size", "max_concurrency", "sla_minutes", "expected_rows_per_second", "priority")


@dataclass(frozen=True, slots=True)
class ImportDefaults:
    batch_size: int
    max_concurrency: int
    sla_minutes: int
    expected_rows_per_second: int
    priority: int


def market_import_defaults(key: str) -> ImportDefaults:
    """The market's row; before the first bootstrap (no row), the old system's
    figures, with `BATCH_SIZE_MARKET_DATA` as the batch size."""
    row = MarketImportSettings.objects.filter(market=key).values(*SETTING_FIELDS).first()
    if row is not None:
        return ImportDefaults(**row)
    spec = market_spec(key)
    return ImportDefaults(
        batch_size=settings.BATCH_SIZE_MARKET_DATA,
        **{name: getattr(spec, name) for name in SETTING_FIELDS if name != "batch_size"},
    )


def all_markets_concurrency(children: list[ImportDefaults | int], *, parallel: bool) -> int:
    """An all-markets job's default worker tasks when the request names no
    `globalMaxConcurrency`: as many as its markets would have on their own
    (their sum side by side; the largest when they run one after another)."""
    values = [c if isinstance(c, int) else c.max_concurrency for c in children] or [1]
    return sum(values) if parallel else max(values)


def default_rows() -> list[dict]:
    """The rows bootstrap creates: the old system's figures for each market."""
    return [{"market": spec.key, **{name: getattr(spec, name) for name in SETTING_FIELDS}} for spec in MARKETS]


def market_settings_ensure(*, overwrite: bool = False) -> TableCounts:
    """Bootstrap's part (registered from BatchimportConfig.ready()): create the
    missing rows; reset operators' edits only with `overwrite`."""
    existing = {(row.market,): row for row in MarketImportSettings.objects.all()}
    return rows_sync(MarketImportSettings, default_rows(), key=("market",), overwrite=overwrite, existing=existing)
