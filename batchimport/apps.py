from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BatchimportConfig(AppConfig):
    name = "batchimport"
    verbose_name = _("Batch import: scraper CSV files into market_data")

    def ready(self) -> None:
        # Imported here, not at the top: apps.py is loaded before the app
        # registry is ready, and these modules import models.
        from batchimport import dashboard, retention
        from batchimport.metrics_collectors import ImportCollector
        from batchimport.services.market_settings import market_settings_ensure
        from batchimport.services.pipeline import import_step
        from etl import pipeline
        from etl.dashboard import register_panel
        from etl.metrics import register_collector
        from etl.retention import register_pruner
        from etl.services.reference import register_bootstrap_table
        from etl.services.schedules import register_schedule_permission

        register_bootstrap_table("import_market_settings", market_settings_ensure)
        register_schedule_permission("batchimport.tasks.scheduled_import", "batchimport.start_import")
        register_collector("batchimport.sla", ImportCollector())
        register_pruner("import_jobs", retention.prune_import_jobs)
        register_pruner("rejected_rows", retention.prune_rejected_rows)

        pipeline.register_step(
            "import",
            order=20,
            run=import_step,
            description=_("Import scraper CSV files into market_data (runs when the options carry a path)."),
        )
        register_panel(
            "import_sla",
            title=_("Import SLA (7 days)"),
            order=40,
            template="admin/dashboard/import_sla.html",
            context=dashboard.sla_context,
        )
