from django.apps import AppConfig


class EnrichmentConfig(AppConfig):
    name = "enrichment"

    def ready(self) -> None:
        from enrichment.services import features
        from etl import pipeline

        pipeline.register_step(
            "features",
            order=60,
            run=features.features_step,
            description="Copy linked market_data candles into market_data_v2 and compute features and quality.",
        )
