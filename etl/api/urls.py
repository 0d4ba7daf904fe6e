from django.urls import path
from rest_framework.routers import DefaultRouter

from etl.api import pipeline_views, runs, views

router = DefaultRouter()
router.register("asset-classes", views.AssetClassViewSet)
router.register("markets", views.MarketViewSet)
router.register("trading-sessions", views.TradingSessionViewSet)
router.register("data-providers", views.DataProviderViewSet)
router.register("symbols", views.SymbolViewSet)
router.register("market-data", views.MarketDataViewSet)
router.register("runs/pipeline", runs.PipelineRunViewSet, basename="pipeline-run")
router.register("runs/summary-recounts", runs.SummaryRecountViewSet, basename="summary-recount")

urlpatterns = [
    path("etl/bootstrap-reference-data", views.BootstrapReferenceDataView.as_view(), name="etl-bootstrap"),
    path("etl/bootstrap-status", views.BootstrapStatusView.as_view(), name="etl-bootstrap-status"),
    path("etl/validate-reference-data", views.ValidateReferenceDataView.as_view(), name="etl-validate-reference"),
    path("etl/health", views.HealthView.as_view(), name="etl-health"),
    path("auth/token/", views.LoginTokenView.as_view(), name="api-token"),
    path("schedules/<int:schedule_id>/run-now", views.ScheduleRunNowView.as_view(), name="schedule-run-now"),
    *router.urls,
]

urlpatterns += [
    path("etl/sync-symbols", pipeline_views.SyncSymbolsView.as_view(), name="etl-sync-symbols"),
    path("etl/execute-full-pipeline", pipeline_views.ExecuteFullPipelineView.as_view(), name="etl-execute-pipeline"),
    path("etl/status", pipeline_views.StatusView.as_view(), name="etl-status"),
    path("etl/symbol-sync-status", pipeline_views.SymbolSyncStatusView.as_view(), name="etl-symbol-sync-status"),
    path("etl/execution-history", pipeline_views.ExecutionHistoryView.as_view(), name="etl-execution-history"),
    path("etl/execution-history/<int:pk>", pipeline_views.ExecutionDetailView.as_view(), name="etl-execution-detail"),
    path(
        "etl/validate-cleanup-symbols",
        pipeline_views.ValidateCleanupSymbolsView.as_view(),
        name="etl-validate-cleanup-symbols",
    ),
    path("etl/schedule-recurring", pipeline_views.ScheduleRecurringView.as_view(), name="etl-schedule-recurring"),
]
