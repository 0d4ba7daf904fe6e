from django.urls import path
from rest_framework.routers import SimpleRouter

from corrections.api import views

PREFIX = "etl/asset-class-correction"

router = SimpleRouter()
router.register("runs/corrections", views.CorrectionRunViewSet, basename="correction-run")

urlpatterns = [
    path(f"{PREFIX}/analyze", views.AnalyzeView.as_view(), name="correction-analyze"),
    path(f"{PREFIX}/preview", views.PreviewView.as_view(), name="correction-preview"),
    path(f"{PREFIX}/execute", views.ExecuteView.as_view(), name="correction-execute"),
    path(f"{PREFIX}/validate", views.ValidateView.as_view(), name="correction-validate"),
    path(f"{PREFIX}/status", views.StatusView.as_view(), name="correction-status"),
    path(f"{PREFIX}/cancel", views.CancelView.as_view(), name="correction-cancel"),
    path(f"{PREFIX}/rollback", views.RollbackView.as_view(), name="correction-rollback"),
    path(f"{PREFIX}/health", views.HealthView.as_view(), name="correction-health"),
    path(f"{PREFIX}/metrics", views.MetricsView.as_view(), name="correction-metrics"),
]
urlpatterns += router.urls
