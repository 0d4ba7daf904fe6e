from django.urls import path
from rest_framework.routers import SimpleRouter

from batchimport.api import views

router = SimpleRouter()
router.register("runs/import-jobs", views.ImportJobViewSet, basename="import-job-run")

urlpatterns = [
    path("batch-processing/markets/<str:market>/import", views.MarketImportView.as_view(), name="import-market"),
    path("batch-processing/all-markets/import", views.AllMarketsImportView.as_view(), name="import-all-markets"),
    path("batch-processing/jobs/<int:job_id>/status", views.JobStatusView.as_view(), name="import-job-status"),
    path("batch-processing/jobs/<int:job_id>/cancel", views.JobCancelView.as_view(), name="import-job-cancel"),
    path("batch-processing/jobs/<int:job_id>/retry", views.JobRetryView.as_view(), name="import-job-retry"),
    path("batch-processing/monitoring/stats", views.MonitoringStatsView.as_view(), name="import-stats"),
    path("batch-processing/dead-letter-queue", views.DeadLetterQueueView.as_view(), name="import-dead-letters"),
    path(
        "batch-processing/dead-letter-queue/<int:letter_id>/resubmit",
        views.DeadLetterResubmitView.as_view(),
        name="import-dead-letter-resubmit",
    ),
    path("batch-processing/health", views.HealthView.as_view(), name="import-health"),
    path("batch-processing/schedules/all-markets", views.AllMarketsScheduleView.as_view(), name="import-schedule"),
    path(
        "batch-processing/schedules/<int:schedule_id>",
        views.ScheduleView.as_view(),
        name="import-schedule-detail",
    ),
]
urlpatterns += router.urls
