from django.apps import AppConfig


class CorrectionsConfig(AppConfig):
    name = "corrections"
    verbose_name = "Asset-class corrections"

    def ready(self) -> None:
        from corrections import retention, services
        from etl import pipeline
        from etl.retention import register_pruner

        pipeline.register_step(
            "correct",
            order=40,
            run=services.correct_step,
            description="Set market_data.asset_class from the linked symbol (analyze, execute with backup, validate).",
        )
        register_pruner("correction_backups", retention.prune_correction_backups)
