from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from etl import pipeline
from etl.retention import register_pruner


class CorrectionsConfig(AppConfig):
    name = "corrections"
    verbose_name = _("Asset-class corrections")

    def ready(self) -> None:
        # Imported here, not at the top: they import models, which Django only
        # allows once the app registry is ready (AppRegistryNotReady otherwise).
        from corrections import retention, services

        pipeline.register_step(
            "correct",
            order=40,
            run=services.correct_step,
            description=_(
                "Set market_data.asset_class from the linked symbol (analyze, execute with backup, validate)."
            ),
        )
        register_pruner("correction_backups", retention.prune_correction_backups)
        register_pruner("correction_runs", retention.prune_correction_runs)
