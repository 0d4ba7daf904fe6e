from django.apps import AppConfig
from django.core.signals import request_started
from django.db.models.signals import pre_save
from django.utils.translation import gettext_lazy as _

from etl import dashboard, pipeline, retention


class EtlConfig(AppConfig):
    name = "etl"
    verbose_name = _("ETL core: reference data, symbols, market data")

    def ready(self) -> None:
        # Imported here, not at the top: these modules import models, which Django
        # only allows once the app registry is ready (AppRegistryNotReady otherwise).
        from etl import dashboard_panels, health, metrics, queue, services
        from etl.services import integrity as integrity_services
        from etl.services import retention as retention_services
        from etl.services import schedules as schedule_services
        from etl.services import summaries as summary_services

        pipeline.register_step(
            "bootstrap",
            order=10,
            run=services.bootstrap_step,
            description=_("Create missing reference data (asset classes, markets, sessions, providers)."),
            default=False,
        )
        dashboard.register_panel(
            "runs",
            title=_("Running work"),
            order=20,
            template="admin/dashboard/runs.html",
            context=dashboard_panels.runs_context,
        )
        dashboard.register_panel(
            "integrity",
            title=_("Data integrity"),
            order=10,
            template="admin/dashboard/integrity.html",
            context=dashboard_panels.integrity_context,
        )
        dashboard.register_panel(
            "pipeline",
            title=_("Pipeline runs"),
            order=15,
            template="admin/dashboard/pipeline.html",
            context=dashboard_panels.pipeline_context,
        )
        dashboard.register_panel(
            "queue",
            title=_("Task queue"),
            order=90,
            template="admin/dashboard/queue.html",
            context=dashboard_panels.queue_context,
        )
        metrics.register_collectors()
        summary_services.register_core_sources()
        health.register_health_check("summary_drift", summary_services.summary_drift_health)
        # The web signs a probe on its first request; a worker checks it before it starts (etl.queue).
        request_started.connect(queue.web_probe_on_request, dispatch_uid="etl_web_signing_probe")
        # Every zoned cron schedule's stored next run is its cron time in its zone (etl.services.schedules).
        pre_save.connect(
            schedule_services.schedule_keep_zone, sender="django_q.Schedule", dispatch_uid="etl_schedule_zone"
        )
        retention.register_pruner("task_results", retention_services.prune_task_results)
        retention.register_pruner("pipeline_runs", retention_services.prune_pipeline_runs)
        retention.register_pruner("integrity_snapshots", integrity_services.prune_integrity_snapshots)
        retention.register_pruner("dead_letters_resolved", retention_services.prune_resolved_dead_letters)
        pipeline.register_step(
            "sync",
            order=30,
            run=services.symbols_sync_step,
            description=_("Create a symbol for every (ticker, market) in market_data and link every candle."),
        )
        pipeline.register_step(
            "validate",
            order=70,
            run=services.symbols_validate_step,
            description=_("Check symbols (clean them with option clean_symbols) and report data integrity."),
        )
