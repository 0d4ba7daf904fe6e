"""Symbol sync, data-integrity status and the pipeline: the old system's
`/api/etl/...` paths, each a thin call to one service or selector."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework import serializers as drf
from rest_framework.response import Response
from rest_framework.views import APIView

from etl import selectors, services
from etl.api import pipeline_serializers as ps
from etl.api.pagination import ApiPagination
from etl.api.permissions import StaffWithPermission
from etl.api.request_policy import PolicySerializer, PolicyViewMixin, ignored_options_record, old_names_add
from etl.api.runs import (
    PipelineRunAcceptedSerializer,
    PipelineRunDetailSerializer,
    accepted,
    inline_limit,
    pipeline_run_body,
)
from etl.api.serializers import ErrorSerializer

RUN_DETAIL = "pipeline-run-detail"
# The old names of the sync's answer that the guides' scripts read (docs/api.md, glossary).
SYNC_OLD_NAMES = {"MarketDataRecordsWithoutSymbols": "candles_without_symbol", "SymbolsAdded": "symbols_created"}


def _requester(request) -> str:
    return request.user.get_username()


def _queued(view: PolicyViewMixin, request, **kwargs) -> Response:
    """Queue a pipeline run (one step for sync and bootstrap), keep the ignored options on it: 202."""
    run = services.pipeline_queue(trigger="api", requested_by=_requester(request), **kwargs)
    ignored_options_record(run=run, ignored=view.ignored_options)
    return accepted(request, pipeline_run_body(run), url_name=RUN_DETAIL, run_id=run.pk)


def _inline(view: PolicyViewMixin, request, *, max_seconds: int | None, **kwargs):
    """Run the pipeline in the request, bounded by the inline limit; the run record keeps the ignored options."""
    if view.ignored_options:
        kwargs["options"] = {**kwargs.get("options", {}), "ignored_options": dict(view.ignored_options)}
    return services.pipeline_run(
        trigger="api", requested_by=_requester(request), max_seconds=inline_limit(max_seconds), **kwargs
    )


class SyncResponseSerializer(drf.Serializer):
    """The sync's answer in the request (`runAsync: false`): the sync step's counts."""

    run_id = drf.IntegerField(allow_null=True, help_text="null for a dry run (it records nothing)")
    status = drf.CharField()
    batch_size = drf.IntegerField()
    dry_run = drf.BooleanField()
    pairs_found = drf.IntegerField()
    symbols_created = drf.IntegerField()
    symbols_updated = drf.IntegerField()
    candles_linked = drf.IntegerField()
    candles_without_symbol = drf.IntegerField()
    filtered_out = drf.IntegerField()
    unresolved_count = drf.IntegerField()
    batches = drf.IntegerField()
    timed_out = drf.BooleanField()
    duration_seconds = drf.FloatField()
    unresolved = ps.UnresolvedPairSerializer(many=True)
    planned = ps.PlannedSymbolSerializer(many=True, required=False, help_text="a dry run's symbols")
    ignored_options = drf.DictField(child=drf.CharField())
    MarketDataRecordsWithoutSymbols = drf.IntegerField(help_text="old name of candles_without_symbol")
    SymbolsAdded = drf.IntegerField(help_text="old name of symbols_created")
    Success = drf.BooleanField(help_text="old name: nothing failed or timed out")


class SyncSymbolsView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.sync_symbols",)

    @extend_schema(
        request=ps.SyncSymbolsRequestSerializer,
        responses={
            200: SyncResponseSerializer,
            202: PipelineRunAcceptedSerializer,
            400: ErrorSerializer,
            409: ErrorSerializer,
        },
    )
    def post(self, request):
        """A pipeline run of the one step `sync` (202), or, with `runAsync: false`
        or `dryRun`, services.symbols_sync in the request."""
        params = self.policy_body(ps.SyncSymbolsRequestSerializer)
        options, asked = params.step_options(), params.max_seconds()
        if params.validated_data["dry_run"]:
            result = services.symbols_sync(
                batch_size=options["batch_size"],
                asset_classes=options["asset_classes"],
                venues=options["venues"],
                skip_existing=options["skip_existing"],
                max_seconds=inline_limit(asked),
                dry_run=True,
            )
            return self._answer(result.to_dict(), run_id=None, run_status="succeeded", batch_size=options["batch_size"])
        if params.validated_data["run_async"]:
            response = _queued(self, request, steps=["sync"], options=options, max_seconds=asked)
            response.data["batch_size"] = options["batch_size"]
            return response
        result = _inline(self, request, steps=["sync"], options=options, max_seconds=asked)
        counts = next((step.counts for step in result.steps if step.name == "sync"), {})
        return self._answer(counts, run_id=result.run_id, run_status=result.status, batch_size=options["batch_size"])

    def _answer(self, counts: dict, *, run_id: int | None, run_status: str, batch_size: int) -> Response:
        body = {"run_id": run_id, "status": run_status, "batch_size": batch_size, **counts}
        body["Success"] = run_status == "succeeded" and not counts.get("timed_out", True)
        return Response(old_names_add(body, SYNC_OLD_NAMES))


class ExecuteFullPipelineView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.run_pipeline",)

    @extend_schema(
        request=ps.PipelineRequestSerializer,
        responses={
            200: PipelineRunDetailSerializer,
            202: PipelineRunAcceptedSerializer,
            400: ErrorSerializer,
            409: ErrorSerializer,
        },
    )
    def post(self, request):
        """services.pipeline_queue (202), or services.pipeline_run in the request with `runAsync: false`."""
        params = self.policy_body(ps.PipelineRequestSerializer)
        kwargs = params.service_kwargs([planned.name for planned in services.pipeline_plan()])
        if params.validated_data["run_async"]:
            return _queued(self, request, **kwargs)
        result = _inline(self, request, **kwargs)
        return Response(pipeline_run_body(selectors.pipeline_history().get(pk=result.run_id)))


STATUS_OLD_NAMES = {
    "OverallDataQuality": "overall.overall_quality",
    "SymbolCoverage": "overall.symbol_coverage",
    "EnrichmentCoverage": "overall.enrichment_coverage",
    "MarketDataRecordsWithoutSymbols": "overall.candles_without_symbol",
}


class StatusView(APIView):
    @extend_schema(responses={200: ps.IntegrityStatusSerializer})
    def get(self, request):
        """selectors.integrity_status, plus the old names the guides' daily check reads."""
        return Response(old_names_add(selectors.integrity_status(), STATUS_OLD_NAMES))


class SymbolSyncStatusView(APIView):
    @extend_schema(responses={200: ps.SymbolSyncStatusSerializer})
    def get(self, request):
        return Response(selectors.symbol_sync_status())


class HistoryQuery(PolicySerializer):
    """The old history's filters; the run list (`/api/runs/pipeline/`) has them all."""

    status = drf.CharField(max_length=16, required=False)
    trigger = drf.CharField(max_length=16, required=False)
    cursor = drf.CharField(required=False, max_length=1000)
    page = drf.CharField(required=False, max_length=20)
    page_size = drf.CharField(required=False, max_length=20)


@extend_schema(parameters=[HistoryQuery])
class ExecutionHistoryView(generics.ListAPIView):
    """The old path of the pipeline runs' list."""

    serializer_class = ps.PipelineRunSerializer
    pagination_class = ApiPagination
    filter_backends: list = []

    def get_queryset(self):
        params = HistoryQuery(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return selectors.pipeline_history(
            status=params.validated_data.get("status"), trigger=params.validated_data.get("trigger")
        )


class ExecutionDetailView(generics.RetrieveAPIView):
    """The old path of a pipeline run's detail (`/api/runs/pipeline/{id}/`)."""

    serializer_class = PipelineRunDetailSerializer
    queryset = selectors.pipeline_history()


class ValidateCleanupSymbolsView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.clean_symbols",)

    @extend_schema(
        request=ps.ValidateCleanupRequestSerializer,
        responses={200: ps.SymbolValidationSerializer, 400: ErrorSerializer},
    )
    def post(self, request):
        params = self.policy_body(ps.ValidateCleanupRequestSerializer)
        result = services.symbols_validate_cleanup(
            fix=params.validated_data["fix"], fixes=params.validated_data.get("fixes"), requested_by=_requester(request)
        )
        return Response(result.to_dict())


class ScheduleRecurringView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.schedule_pipeline",)

    @extend_schema(
        request=ps.ScheduleRequestSerializer,
        responses={201: ps.ScheduleResultSerializer, 200: ps.ScheduleResultSerializer, 400: ErrorSerializer},
    )
    def post(self, request):
        d = self.policy_body(ps.ScheduleRequestSerializer).validated_data
        result = services.pipeline_schedule(
            cron=d["cron"],
            tz=d["timezone"],
            name=d["name"],
            steps=d.get("steps"),
            options=d.get("options"),
            continue_on_failure=d["continue_on_failure"],
            max_seconds=round(d["max_minutes"] * 60) if "max_minutes" in d else None,
        )
        return Response(result.to_dict(), status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
