from django.apps import AppConfig


class EtlConfig(AppConfig):
    name = "etl"
    verbose_name = "ETL core: reference data, symbols, market data"

    def ready(self) -> None:
        from etl import pipeline, services

        pipeline.register_step(
            "bootstrap",
            order=10,
            run=services.bootstrap_step,
            description="Create missing reference data (asset classes, markets, sessions, providers).",
            default=False,
        )
