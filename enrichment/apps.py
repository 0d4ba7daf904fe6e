"""The enrichment app: asset metadata (`assets/`), candles and features (`candles/`), and the
provider HTTP layer under both (`providers/`). Its pipeline steps, dashboard panel, metrics
collector and retention pruners are registered with etl's registries here."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _ensure_schedules(**kwargs) -> None:
    # Imported when called: this module is imported before the models exist.
    from enrichment.candles.services.schedules import schedules_ensure

    schedules_ensure()


def _ensure_refresh_schedule(**kwargs) -> None:
    # Imported when called, as above.
    from enrichment.assets.services.refresh_schedule import refresh_schedule_ensure

    refresh_schedule_ensure()


class EnrichmentConfig(AppConfig):
    name = "enrichment"
    verbose_name = _("Enrichment")

    def ready(self) -> None:
        # Imported here, not at the top: an AppConfig module is imported before the models exist.
        from enrichment.assets.dashboard import coverage_context
        from enrichment.assets.services.enrich import enrich_step
        from enrichment.candles.collector import FreshnessCollector
        from enrichment.candles.dashboard import freshness_context
        from enrichment.candles.selectors import data_completeness
        from enrichment.candles.services.backfill import backfills_orphaned_requeue
        from enrichment.candles.services.feature_compute import compute_log_prune
        from enrichment.candles.services.feature_runs import features_step
        from enrichment.providers.collector import ProviderCollector, circuits_health
        from enrichment.providers.dashboard import providers_context
        from enrichment.providers.fetch_log import fetch_log_prune
        from enrichment.summaries import register_summary_sources
        from etl.dashboard import register_panel
        from etl.health import register_health_check
        from etl.metrics import register_collector
        from etl.pipeline import register_step
        from etl.recovery import register_work_sweep
        from etl.retention import register_pruner
        from etl.services.integrity import register_indicator
        from etl.services.partitions import register_partitioned_table
        from etl.services.schedules import register_schedule_permission

        register_partitioned_table("market_data_v2")
        register_step(
            "enrich",
            order=50,
            run=enrich_step,
            description=_("Asset metadata from the providers (never-enriched symbols by default)"),
        )
        register_step(
            "features",
            order=60,
            run=features_step,
            description=_("Copy linked market_data candles into market_data_v2 and compute features and quality."),
        )
        # Who may fire these schedules now (the admin's "Run now", POST /api/schedules/{id}/run-now).
        register_schedule_permission("enrichment.candles.tasks.features_scheduled", "enrichment.compute_features")
        register_schedule_permission("enrichment.candles.tasks.live_poll", "enrichment.run_live_poll")
        register_schedule_permission("enrichment.assets.tasks.assets_refresh_stale", "enrichment.run_enrichment")
        register_summary_sources()
        register_collector("enrichment.providers", ProviderCollector())
        register_work_sweep("backfills", backfills_orphaned_requeue)
        register_indicator("data_completeness", data_completeness)
        register_health_check("provider_circuits", circuits_health)
        register_collector("enrichment.candles.freshness", FreshnessCollector())
        register_pruner("enrichment_fetch_log", fetch_log_prune)
        register_pruner("enrichment_compute_log", compute_log_prune)
        register_panel(
            "providers",
            title=_("Data providers"),
            order=60,
            template="admin/dashboard/providers.html",
            context=providers_context,
        )
        register_panel(
            "enrichment_coverage",
            title=_("Enrichment coverage"),
            order=55,
            template="admin/dashboard/enrichment_coverage.html",
            context=coverage_context,
        )
        post_migrate.connect(_ensure_refresh_schedule, sender=self, dispatch_uid="enrichment_refresh_schedule")
        register_panel(
            "freshness",
            title=_("Live data freshness"),
            order=65,
            template="admin/dashboard/freshness.html",
            context=freshness_context,
        )
        # The default schedules exist once the markets do (after bootstrap; the step ensures them too).
        post_migrate.connect(_ensure_schedules, sender=self, dispatch_uid="enrichment_feature_schedules")
