"""API of the candle side (the old system's paths under /api/v1/) and its runs as
resources (/api/runs/features/, /api/runs/backfills/). Views parse with the
request policy, call one service, render; the trigger answers 202 with the run
and its Location unless `runAsync: false`."""

from __future__ import annotations

import csv
import io
from typing import ClassVar

from django.http import HttpResponse
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from enrichment.candles import selectors
from enrichment.candles.api import serializers as s
from enrichment.candles.freshness import freshness_for_symbol
from enrichment.candles.models import BackfillState, FeatureRun
from enrichment.candles.services import backfill, feature_runs
from enrichment.candles.services.backfill_create import backfills_create
from enrichment.candles.services.series_refs import symbol_resolve, symbols_from_params, timeframe_parse
from etl.api.permissions import StaffWithPermission
from etl.api.request_policy import PolicyViewMixin, ignored_options_record
from etl.api.runs import RunListQuery, RunViewSet, accepted
from etl.api.serializers import ErrorSerializer
from etl.errors import ConflictError, DomainError
from etl.timeparse import moment_parse

COMPUTE_PERM = ("enrichment.compute_features",)
BACKFILL_PERM = ("enrichment.run_backfill",)
FEATURE_RUN_DETAIL = "feature-run-detail"
BACKFILL_DETAIL = "backfill-detail"


class CSVRenderer(BaseRenderer):
    """Lets `?format=csv` and `Accept: text/csv` through content negotiation; the view writes
    the CSV itself, so this only renders error bodies (as `detail,code`)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if not isinstance(data, dict):
            return b""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(list(data))
        writer.writerow([str(v) for v in data.values()])
        return buf.getvalue().encode()


def feature_run_accepted(request, run: FeatureRun) -> Response:
    """202 with the queued run and its Location."""
    return accepted(request, dict(s.FeatureRunSerializer(run).data), url_name=FEATURE_RUN_DETAIL, run_id=run.pk)


class EnrichmentStatusView(PolicyViewMixin, APIView):
    @extend_schema(responses={200: s.SymbolStatusSerializer, 400: ErrorSerializer, 404: ErrorSerializer})
    def get(self, request, symbol: str):
        """Calls selectors.enrichment_status_for_symbol."""
        self.policy_query_params(fields=())
        return Response(selectors.enrichment_status_for_symbol(symbol=symbol_resolve(symbol)))


class FreshnessView(APIView):
    @extend_schema(responses={200: s.FreshnessSerializer, 400: ErrorSerializer, 404: ErrorSerializer})
    def get(self, request, symbol: str):
        """Calls freshness.freshness_for_symbol."""
        resolved = symbol_resolve(symbol)
        series = freshness_for_symbol(symbol=resolved)
        return Response({"symbol": resolved.ticker, "market": resolved.market.code, "series": series})


class EnrichmentMetricsView(PolicyViewMixin, APIView):
    @extend_schema(responses={200: s.EnrichmentMetricsSerializer, 400: ErrorSerializer})
    def get(self, request):
        """Calls selectors.enrichment_metrics."""
        self.policy_query_params(fields=())
        return Response(selectors.enrichment_metrics())


def _symbols_check(refs: list[str]) -> list:
    """The symbols a body names; one that is unknown or ambiguous is bad input here (400 on `symbols`),
    not a missing resource (series_refs answers 404 for a symbol in the path)."""
    try:
        return symbols_from_params(refs)
    except DomainError as exc:
        raise ValidationError({"symbols": [exc.message]}) from None


class EnrichmentTriggerView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = COMPUTE_PERM

    @extend_schema(
        request=s.TriggerSerializer,
        responses={200: s.FeatureRunResultSerializer, 202: s.FeatureRunAcceptedSerializer, 400: ErrorSerializer},
    )
    def post(self, request):
        """Calls feature_runs.feature_run_queue (the default) or feature_run_create + _execute (`runAsync: false`)."""
        data = self.policy_body(s.TriggerSerializer).validated_data
        _symbols_check(data["symbols"])
        named = {"symbols": data["symbols"], "timeframes": data["timeframes"], "full": data["full"]}
        who = request.user.get_username()
        if data["run_async"]:
            run = feature_runs.feature_run_queue(**named, requested_by=who)
            ignored_options_record(run=run, ignored=self.ignored_options, field="params")
            return feature_run_accepted(request, run)
        run = feature_runs.feature_run_create(**named, requested_by=who)
        ignored_options_record(run=run, ignored=self.ignored_options, field="params")
        return Response({"run_id": run.pk, **feature_runs.feature_run_execute(run=run).to_dict()})


class DataQualityView(PolicyViewMixin, APIView):
    @extend_schema(
        parameters=[OpenApiParameter("timeframe", str), OpenApiParameter("from", str), OpenApiParameter("to", str)],
        responses={200: s.DataQualitySerializer, 400: ErrorSerializer, 404: ErrorSerializer},
    )
    def get(self, request, symbol: str):
        """Calls selectors.quality_for_symbol."""
        q = self.policy_query_params(fields=("timeframe", "from", "to"))
        start, end = moment_parse(q.get("from"), field="from"), moment_parse(q.get("to"), field="to")
        return Response(
            selectors.quality_for_symbol(
                symbol=symbol_resolve(symbol),
                timeframe=q.get("timeframe"),
                start=start.date() if start else None,
                end=end.date() if end else None,
            )
        )


def _features_csv(rows: list[dict], filename: str) -> HttpResponse:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "ts": row["ts"].isoformat(), "quality_flags": "|".join(row["quality_flags"])})
    response = HttpResponse(buf.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class MarketFeaturesView(PolicyViewMixin, APIView):
    """Candles and features of one series in a time range; `?format=csv` (or Accept: text/csv) for CSV."""

    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("from", str, description="ISO date/time, inclusive"),
            OpenApiParameter("to", str, description="ISO date/time, exclusive"),
            OpenApiParameter(
                "limit", int, description=f"last N bars of the range, at most {selectors.MAX_FEATURE_ROWS}"
            ),
            OpenApiParameter("format", str, enum=["json", "csv"]),
        ],
        responses={
            (200, "application/json"): s.MarketFeaturesSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
            400: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def get(self, request, symbol: str, timeframe: str):
        """Calls selectors.feature_rows."""
        q = self.policy_query_params(fields=("from", "to", "limit", "format"))
        timeframe_parse(timeframe)
        try:
            limit = int(q.get("limit", 1000))
        except ValueError:
            raise DomainError(
                gettext("limit: %(value)s is not a number") % {"value": repr(q.get("limit"))}, code="bad_limit"
            ) from None
        resolved = symbol_resolve(symbol)
        rows = selectors.feature_rows(
            symbol=resolved,
            timeframe=timeframe,
            start=moment_parse(q.get("from"), field="from"),
            end=moment_parse(q.get("to"), field="to"),
            limit=limit,
        )
        if request.accepted_renderer.format == "csv":
            return _features_csv(rows, f"{resolved.ticker}_{timeframe}_features.csv")
        body = {"symbol": resolved.ticker, "market": resolved.market.code, "timeframe": timeframe}
        return Response({**body, "count": len(rows), "results": rows})


@extend_schema_view(
    list=extend_schema(parameters=[RunListQuery], responses={200: s.FeatureRunSerializer(many=True)}),
    retrieve=extend_schema(responses={200: s.FeatureRunSerializer, 404: ErrorSerializer}),
)
class FeatureRunViewSet(RunViewSet):
    """Feature runs: `kind` filters on compute or backfill."""

    queryset = FeatureRun.objects.all()
    serializer_class = s.FeatureRunSerializer
    kind_field = "kind"
    action_perms: ClassVar = {"cancel": COMPUTE_PERM, "retry": COMPUTE_PERM}

    @extend_schema(request=None, responses={200: s.FeatureRunSerializer, 404: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """feature_runs.feature_runs_cancel, as the admin's: the run stops between series."""
        run = self.get_object()
        feature_runs.feature_runs_cancel(runs=FeatureRun.objects.filter(pk=run.pk))
        run.refresh_from_db()
        return Response(s.FeatureRunSerializer(run).data)

    @extend_schema(
        request=None,
        responses={
            202: s.FeatureRunAcceptedSerializer,
            400: ErrorSerializer,
            404: ErrorSerializer,
            409: ErrorSerializer,
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """feature_runs.feature_run_queue: a new queued compute run with this run's symbols and timeframes."""
        run = self.get_object()
        if run.kind != FeatureRun.Kind.COMPUTE:
            raise ConflictError(
                gettext("a backfill run is retried through its backfills (/api/runs/backfills/{id}/retry/)")
            )
        params = run.params or {}
        again = feature_runs.feature_run_queue(
            symbols=list(params.get("symbols") or []),
            timeframes=list(params.get("timeframes") or []),
            full=bool(params.get("full")),
            requested_by=request.user.get_username(),
        )
        return feature_run_accepted(request, again)


@extend_schema_view(
    list=extend_schema(parameters=[s.BackfillListQuery], responses={200: s.BackfillSerializer(many=True)}),
    retrieve=extend_schema(responses={200: s.BackfillSerializer, 404: ErrorSerializer}),
)
class BackfillViewSet(RunViewSet):
    """Resumable backfills (one per symbol, timeframe and source), newest first."""

    queryset = BackfillState.objects.select_related("symbol__market")
    serializer_class = s.BackfillSerializer
    action_perms: ClassVar = {"retry": BACKFILL_PERM, "cancel": BACKFILL_PERM, "create": BACKFILL_PERM}

    def filter_queryset(self, queryset):
        if self.action != "list":
            return queryset
        wanted = self.policy_query(s.BackfillListQuery).validated_data
        lookups = {
            "state": wanted.get("state"),
            "source__iexact": wanted.get("source"),
            "timeframe": wanted.get("timeframe"),
            "symbol__ticker__iexact": wanted.get("symbol"),
        }
        return queryset.filter(**{key: value for key, value in lookups.items() if value is not None})

    @extend_schema(
        request=s.BackfillCreateSerializer,
        responses={202: s.BackfillsAcceptedSerializer, 400: ErrorSerializer},
    )
    def create(self, request, *args, **kwargs):
        """backfill_create.backfills_create, as the admin's "Create backfills": planned and queued (202)."""
        d = self.policy_body(s.BackfillCreateSerializer).validated_data
        created = backfills_create(
            symbols=_symbols_check(d["symbols"]),
            timeframes=d["timeframes"],
            source=d["source"],
            start=d.get("start"),
            end=d.get("end"),
            chunk_bars=d["chunk_bars"],
        )
        body = {"backfills": s.BackfillSerializer(created.states, many=True).data, "queued": created.queued}
        return accepted(request, body, url_name=BACKFILL_DETAIL, run_id=created.states[0].pk)

    @extend_schema(request=None, responses={202: s.BackfillSerializer, 404: ErrorSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """backfill.backfills_queue, as the admin's "run now": the retry wait is cleared and a worker resumes it."""
        state = self.get_object()
        if not backfill.backfills_queue(states=BackfillState.objects.filter(pk=state.pk)):
            state.refresh_from_db()
            if state.state == BackfillState.State.DONE:
                raise ConflictError(
                    gettext("backfill %(backfill)s is done: nothing to run") % {"backfill": state.pk},
                    code="backfill_done",
                )
            raise ConflictError(
                gettext("backfill %(backfill)s is already queued or running") % {"backfill": state.pk},
                code="backfill_running",
            )
        state.refresh_from_db()
        return accepted(request, dict(s.BackfillSerializer(state).data), url_name=BACKFILL_DETAIL, run_id=state.pk)

    @extend_schema(request=None, responses={200: s.BackfillSerializer, 404: ErrorSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """backfill.backfills_cancel, as the admin's: its worker stops at the next chunk; retry resumes it."""
        state = self.get_object()
        if not backfill.backfills_cancel(states=BackfillState.objects.filter(pk=state.pk)):
            raise ConflictError(
                gettext("backfill %(backfill)s is %(state)s: nothing to cancel")
                % {"backfill": state.pk, "state": state.get_state_display()},
                code="not_running",
            )
        state.refresh_from_db()
        return Response(s.BackfillSerializer(state).data)
