from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_schedules(**kwargs) -> None:
    from enrichment.services.schedules import schedules_ensure

    schedules_ensure()


class EnrichmentConfig(AppConfig):
    name = "enrichment"

    def ready(self) -> None:
        from enrichment.services import features
        from enrichment.services.assets import enrich_step
        from etl.pipeline import register_step

        register_step(
            "enrich",
            order=50,
            run=enrich_step,
            description="Asset metadata from the providers (never-enriched symbols by default)",
        )
        register_step(
            "features",
            order=60,
            run=features.features_step,
            description="Copy linked market_data candles into market_data_v2 and compute features and quality.",
        )
        from enrichment import dashboard
        from enrichment.metrics_collectors import ProviderCollector
        from etl.dashboard import register_panel
        from etl.metrics import register_collector

        register_collector("enrichment.providers", ProviderCollector())
        from enrichment import retention
        from etl.retention import register_pruner

        register_pruner("enrichment_fetch_log", retention.prune_fetch_log)
        register_pruner("enrichment_compute_log", retention.prune_compute_log)

        register_panel(
            "providers",
            title="Data providers",
            order=60,
            template="admin/dashboard/providers.html",
            context=dashboard.providers_context,
        )
        # The default schedules exist once the markets do (after bootstrap; the step ensures them too).
        post_migrate.connect(_ensure_schedules, sender=self, dispatch_uid="enrichment_feature_schedules")
