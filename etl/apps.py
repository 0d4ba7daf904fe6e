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
        pipeline.register_step(
            "sync",
            order=30,
            run=services.symbols_sync_step,
            description="Create a symbol for every (ticker, market) in market_data and link every candle.",
        )
        pipeline.register_step(
            "validate",
            order=70,
            run=services.symbols_validate_step,
            description="Check symbols (clean them with option clean_symbols) and report data integrity.",
        )
