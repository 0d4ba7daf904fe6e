"""Runs as resources: one shape for every run type's viewset (list with filters,
newest first, in the one pagination; retrieve; the actions that apply), the 202
answer long work gives, and the pipeline runs' viewset.

Each app's run viewset subclasses :class:`RunViewSet` and names its model's
"kind" column and its actions' permissions; the actions call the same service
as the admin's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django.urls import reverse
from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.metadata import SimpleMetadata
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from etl import services
from etl.api import pipeline_serializers as ps
from etl.api.pagination import ApiPagination
from etl.api.permissions import StaffWithPermission
from etl.api.request_policy import PolicySerializer, PolicyViewMixin
from etl.api.serializers import ErrorSerializer
from etl.models import PipelineRun, RunStatus, SummaryRecount
from etl.services import summaries as summary_services

# The longest a request may hold the connection when it asks `runAsync: false`:
# the work gets this as its time limit (gunicorn's --timeout is above it, README).
INLINE_MAX_SECONDS = 300


def accepted(request, body: Mapping[str, Any], *, url_name: str, run_id: int) -> Response:
    """202 with the run's id and a `Location` header for its status."""
    location = request.build_absolute_uri(reverse(url_name, args=[run_id]))
    return Response(
        {**body, "run_id": run_id, "location": location},
        status=status.HTTP_202_ACCEPTED,
        headers={"Location": location},
    )


def inline_limit(asked: float | None) -> int:
    """The time limit of work run in the request: what was asked, at most INLINE_MAX_SECONDS."""
    return int(min(asked, INLINE_MAX_SECONDS)) if asked else INLINE_MAX_SECONDS


class RunListQuery(PolicySerializer):
    """The filters every run list takes (besides the pagination's parameters)."""

    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    kind = serializers.CharField(max_length=40, required=False, help_text="the run type's kind (see each list)")
    requested_by = serializers.CharField(max_length=150, required=False)
    created_after = serializers.DateTimeField(required=False, help_text="ISO date-time, inclusive")
    created_before = serializers.DateTimeField(required=False, help_text="ISO date-time, exclusive")
    # Read and bounded by ApiPagination; declared so the policy knows them.
    cursor = serializers.CharField(required=False, max_length=1000)
    page = serializers.CharField(required=False, max_length=20)
    page_size = serializers.CharField(required=False, max_length=20)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        low, high = attrs.get("created_after"), attrs.get("created_before")
        if low and high and low >= high:
            raise serializers.ValidationError({"created_after": gettext("must be before created_before")})
        return attrs


class RunMetadata(SimpleMetadata):
    """OPTIONS of a run resource: name and methods. The run viewsets render their bodies
    themselves (no `serializer_class`), so there are no form fields to describe."""

    def determine_actions(self, request, view):
        return {}


class RunViewSet(PolicyViewMixin, viewsets.ReadOnlyModelViewSet):
    """Base of the run viewsets: reads for any authenticated user; each action
    needs staff with the permission `action_perms` names for it."""

    pagination_class = ApiPagination
    metadata_class = RunMetadata
    filter_backends: ClassVar[list] = []
    kind_field: ClassVar[str] = ""
    action_perms: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def get_permissions(self):
        if self.action in self.action_perms:
            self.required_perms = self.action_perms[self.action]
            return [StaffWithPermission()]
        return [IsAuthenticated()]

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        params = RunListQuery(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        wanted = params.validated_data
        lookups = {
            "status": wanted.get("status"),
            self.kind_field: wanted.get("kind"),
            "requested_by": wanted.get("requested_by"),
            "created_at__gte": wanted.get("created_after"),
            "created_at__lt": wanted.get("created_before"),
        }
        return queryset.filter(**{key: value for key, value in lookups.items() if key and value is not None})


class PipelineRunDetailSerializer(ps.PipelineRunSerializer):
    """A pipeline run with its progress, the options it ignored and, when it
    synced symbols, the old names the guides tell operators to read."""

    progress_done = serializers.IntegerField(read_only=True)
    progress_total = serializers.IntegerField(read_only=True, allow_null=True)
    percent = serializers.FloatField(read_only=True, allow_null=True)
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)
    run_id = serializers.IntegerField(source="id", read_only=True)
    ignored_options = serializers.SerializerMethodField()
    Success = serializers.SerializerMethodField(help_text="old name: the run succeeded (status == succeeded)")
    SymbolsAdded = serializers.SerializerMethodField(help_text="old name: the sync step's symbols_created")
    MarketDataRecordsWithoutSymbols = serializers.SerializerMethodField(
        help_text="old name: the sync step's candles_without_symbol"
    )

    class Meta(ps.PipelineRunSerializer.Meta):
        fields = [
            *ps.PipelineRunSerializer.Meta.fields,
            "progress_done",
            "progress_total",
            "percent",
            "eta_seconds",
            "run_id",
            "ignored_options",
            "Success",
            "SymbolsAdded",
            "MarketDataRecordsWithoutSymbols",
        ]

    def _sync_count(self, run: PipelineRun, name: str) -> int | None:
        step = next((s for s in run.step_runs.all() if s.name == "sync"), None)
        value = step.counts.get(name) if step is not None and isinstance(step.counts, dict) else None
        return value if isinstance(value, int) else None

    def get_ignored_options(self, run: PipelineRun) -> dict[str, str]:
        return dict((run.options or {}).get("ignored_options") or {})

    def get_Success(self, run: PipelineRun) -> bool:  # noqa: N802 - the old system's name
        return run.status == RunStatus.SUCCEEDED

    def get_SymbolsAdded(self, run: PipelineRun) -> int | None:  # noqa: N802 - the old system's name
        return self._sync_count(run, "symbols_created")

    def get_MarketDataRecordsWithoutSymbols(self, run: PipelineRun) -> int | None:  # noqa: N802 - the old name
        return self._sync_count(run, "candles_without_symbol")


def pipeline_run_body(run: PipelineRun) -> dict[str, Any]:
    return dict(PipelineRunDetailSerializer(run).data)


class PipelineRunAcceptedSerializer(PipelineRunDetailSerializer):
    """The 202 answer: the queued run and where to read its status."""

    location = serializers.URLField(read_only=True, help_text="the run's status (also the Location header)")

    class Meta(PipelineRunDetailSerializer.Meta):
        fields = [*PipelineRunDetailSerializer.Meta.fields, "location"]


@extend_schema_view(
    list=extend_schema(parameters=[RunListQuery], responses={200: ps.PipelineRunSerializer(many=True)}),
    retrieve=extend_schema(responses={200: PipelineRunDetailSerializer, 404: ErrorSerializer}),
)
class PipelineRunViewSet(RunViewSet):
    """Pipeline runs (also the runs of sync-symbols and bootstrap): `kind` filters on the trigger."""

    queryset = PipelineRun.objects.prefetch_related("step_runs")
    serializer_class = ps.PipelineRunSerializer
    kind_field = "trigger"
    action_perms: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "cancel": ("etl.run_pipeline",),
        "retry": ("etl.run_pipeline",),
    }

    def retrieve(self, request, *args, **kwargs):
        return Response(pipeline_run_body(self.get_object()))

    @extend_schema(request=None, responses={200: PipelineRunDetailSerializer, 404: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """services.pipeline_cancel: the run stops between steps and batches."""
        run = self.get_object()
        services.pipeline_cancel(run=run)
        run.refresh_from_db()
        return Response(pipeline_run_body(run))

    @extend_schema(
        request=None, responses={202: PipelineRunAcceptedSerializer, 404: ErrorSerializer, 409: ErrorSerializer}
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """services.pipeline_rerun: a new queued run with this run's steps and options."""
        run = services.pipeline_rerun(run=self.get_object(), requested_by=request.user.get_username(), trigger="api")
        return accepted(request, pipeline_run_body(run), url_name="pipeline-run-detail", run_id=run.pk)


class SummaryRecountSerializer(serializers.ModelSerializer):
    """A recount of the integrity summaries: the drift it found, whether it repaired it."""

    run_id = serializers.IntegerField(source="id", read_only=True)
    percent = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = SummaryRecount
        fields = [
            "run_id",
            "status",
            "requested_by",
            "repair",
            "sources",
            "created_at",
            "started_at",
            "finished_at",
            "progress_done",
            "progress_total",
            "percent",
            "cancel_requested",
            "drift_count",
            "repaired",
            "drift",
            "result",
            "error",
        ]


class SummaryRecountRequestSerializer(PolicySerializer):
    repair = serializers.BooleanField(default=True, help_text="write the recounted values over the drifted ones")
    sources = serializers.ListField(
        child=serializers.CharField(max_length=40), required=False, help_text="e.g. candles, symbols; empty: all"
    )


@extend_schema_view(
    list=extend_schema(parameters=[RunListQuery], responses={200: SummaryRecountSerializer(many=True)}),
    retrieve=extend_schema(responses={200: SummaryRecountSerializer, 404: ErrorSerializer}),
)
class SummaryRecountViewSet(RunViewSet):
    """Recounts of the integrity summaries (docs/summaries.md); POST starts one on the workers."""

    queryset = SummaryRecount.objects.all()
    serializer_class = SummaryRecountSerializer
    action_perms: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "create": ("etl.recount_summaries",),
        "cancel": ("etl.recount_summaries",),
        "retry": ("etl.recount_summaries",),
    }

    def _accepted(self, request, run: SummaryRecount) -> Response:
        return accepted(request, SummaryRecountSerializer(run).data, url_name="summary-recount-detail", run_id=run.pk)

    @extend_schema(
        request=SummaryRecountRequestSerializer, responses={202: SummaryRecountSerializer, 400: ErrorSerializer}
    )
    def create(self, request):
        """services.summary_recount_queue: a recount on the workers (202)."""
        data = self.policy_body(SummaryRecountRequestSerializer).validated_data
        run = summary_services.summary_recount_queue(
            requested_by=request.user.get_username(), repair=data["repair"], sources=data.get("sources") or None
        )
        return self._accepted(request, run)

    @extend_schema(request=None, responses={200: SummaryRecountSerializer, 404: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """services.summary_recount_cancel: it stops between sources."""
        run = summary_services.summary_recount_cancel(run=self.get_object())
        return Response(SummaryRecountSerializer(run).data)

    @extend_schema(request=None, responses={202: SummaryRecountSerializer, 404: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """services.summary_recount_queue: a new recount with this one's options (202)."""
        run = self.get_object()
        new = summary_services.summary_recount_queue(
            requested_by=request.user.get_username(), repair=run.repair, sources=run.sources or None
        )
        return self._accepted(request, new)
