"""Symbol sync, data-integrity status and the pipeline: the old system's
`/api/etl/...` paths, each a thin call to one service or selector."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from etl import selectors, services
from etl.api import pipeline_serializers as ps
from etl.api.permissions import StaffWithPermission
from etl.api.serializers import ErrorSerializer, QueuedSerializer


def _requester(request) -> str:
    return request.user.get_username()


class SyncSymbolsView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.sync_symbols",)

    @extend_schema(
        request=ps.SyncSymbolsRequestSerializer, responses={200: dict, 202: QueuedSerializer, 400: ErrorSerializer}
    )
    def post(self, request):
        """services.symbols_sync, or symbols_sync_queue with run_async."""
        params = ps.SyncSymbolsRequestSerializer(data=ps.snake_case_keys(request.data))
        params.is_valid(raise_exception=True)
        kwargs = params.service_kwargs()
        if params.validated_data["run_async"]:
            queued = services.symbols_sync_queue(**kwargs)
            return Response({"task_id": queued.task_id}, status=status.HTTP_202_ACCEPTED)
        return Response(services.symbols_sync(**kwargs).to_dict())


class ExecuteFullPipelineView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.run_pipeline",)

    @extend_schema(
        request=ps.PipelineRequestSerializer,
        responses={200: dict, 202: ps.PipelineRunSerializer, 400: ErrorSerializer, 409: ErrorSerializer},
    )
    def post(self, request):
        """services.pipeline_run, or pipeline_queue with run_async."""
        params = ps.PipelineRequestSerializer(data=ps.snake_case_keys(request.data))
        params.is_valid(raise_exception=True)
        kwargs = params.service_kwargs([planned.name for planned in services.pipeline_plan()])
        if params.validated_data["run_async"]:
            run = services.pipeline_queue(trigger="api", requested_by=_requester(request), **kwargs)
            return Response(ps.PipelineRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
        result = services.pipeline_run(trigger="api", requested_by=_requester(request), **kwargs)
        return Response(result.to_dict())


class StatusView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response(selectors.integrity_status())


class SymbolSyncStatusView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response(selectors.symbol_sync_status())


class ExecutionHistoryView(generics.ListAPIView):
    serializer_class = ps.PipelineRunSerializer

    def get_queryset(self):
        return selectors.pipeline_history(
            status=self.request.query_params.get("status"), trigger=self.request.query_params.get("trigger")
        )


class ExecutionDetailView(generics.RetrieveAPIView):
    serializer_class = ps.PipelineRunSerializer
    queryset = selectors.pipeline_history()


class ValidateCleanupSymbolsView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.clean_symbols",)

    @extend_schema(request=ps.ValidateCleanupRequestSerializer, responses={200: dict, 400: ErrorSerializer})
    def post(self, request):
        params = ps.ValidateCleanupRequestSerializer(data=ps.snake_case_keys(request.data))
        params.is_valid(raise_exception=True)
        result = services.symbols_validate_cleanup(
            fix=params.validated_data["fix"], fixes=params.validated_data.get("fixes"), requested_by=_requester(request)
        )
        return Response(result.to_dict())


class ScheduleRecurringView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("etl.schedule_pipeline",)

    @extend_schema(request=ps.ScheduleRequestSerializer, responses={201: dict, 200: dict, 400: ErrorSerializer})
    def post(self, request):
        params = ps.ScheduleRequestSerializer(data=ps.snake_case_keys(request.data))
        params.is_valid(raise_exception=True)
        d = params.validated_data
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
