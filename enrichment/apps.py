from django.apps import AppConfig


class EnrichmentConfig(AppConfig):
    name = "enrichment"

    def ready(self) -> None:
        from enrichment.services.assets import enrich_step
        from etl.pipeline import register_step

        register_step(
            "enrich",
            order=50,
            run=enrich_step,
            description="Asset metadata from the providers (never-enriched symbols by default)",
        )
