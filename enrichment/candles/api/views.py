"""API of the candle side (the old system's paths under /api/v1/). Views parse, call one service, render."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from enrichment.candles import selectors
from enrichment.candles.freshness import freshness_for_symbol
from enrichment.candles.services import feature_runs
from enrichment.candles.services.series_refs import symbol_resolve, timeframe_parse
from etl.api.permissions import StaffWithPermission
from etl.errors import DomainError
from etl.timeparse import moment_parse


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


class TriggerSerializer(serializers.Serializer):
    symbols = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    timeframes = serializers.ListField(child=serializers.CharField(max_length=8), required=False, default=list)
    full = serializers.BooleanField(required=False, default=False)
    run_async = serializers.BooleanField(required=False, default=True)


class EnrichmentStatusView(APIView):
    @extend_schema(responses={200: dict, 404: dict})
    def get(self, request, symbol: str):
        """Calls selectors.enrichment_status_for_symbol."""
        return Response(selectors.enrichment_status_for_symbol(symbol=symbol_resolve(symbol)))


class FreshnessView(APIView):
    @extend_schema(responses={200: dict, 404: dict})
    def get(self, request, symbol: str):
        """Calls freshness.freshness_for_symbol."""
        resolved = symbol_resolve(symbol)
        return Response({"symbol": resolved.ticker, "market": resolved.market.code,
                         "series": freshness_for_symbol(symbol=resolved)})  # fmt: skip


class EnrichmentMetricsView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request):
        """Calls selectors.enrichment_metrics."""
        return Response(selectors.enrichment_metrics())


class EnrichmentTriggerView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("enrichment.compute_features",)

    @extend_schema(request=TriggerSerializer, responses={200: dict, 202: dict, 400: dict})
    def post(self, request):
        """Calls feature_runs.feature_run_queue (run_async, the default) or feature_run_create + _execute."""
        params = TriggerSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        named = {"symbols": data["symbols"], "timeframes": data["timeframes"], "full": data["full"]}
        who = request.user.get_username()
        if data["run_async"]:
            run = feature_runs.feature_run_queue(**named, requested_by=who)
            return Response({"run_id": run.pk, "status": "queued"}, status=status.HTTP_202_ACCEPTED)
        run = feature_runs.feature_run_create(**named, requested_by=who)
        return Response({"run_id": run.pk, **feature_runs.feature_run_execute(run=run).to_dict()})


class DataQualityView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("timeframe", str), OpenApiParameter("from", str), OpenApiParameter("to", str)],
        responses={200: dict},
    )
    def get(self, request, symbol: str):
        """Calls selectors.quality_for_symbol."""
        q = request.query_params
        start, end = moment_parse(q.get("from"), field="from"), moment_parse(q.get("to"), field="to")
        return Response(
            selectors.quality_for_symbol(
                symbol=symbol_resolve(symbol),
                timeframe=q.get("timeframe"),
                start=start.date() if start else None,
                end=end.date() if end else None,
            )
        )


class MarketFeaturesView(APIView):
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
        responses={200: dict},
    )
    def get(self, request, symbol: str, timeframe: str):
        """Calls selectors.feature_rows."""
        q = request.query_params
        timeframe_parse(timeframe)
        try:
            limit = int(q.get("limit", 1000))
        except ValueError:
            raise DomainError(f"limit: {q.get('limit')!r} is not a number", code="bad_limit") from None
        resolved = symbol_resolve(symbol)
        rows = selectors.feature_rows(
            symbol=resolved,
            timeframe=timeframe,
            start=moment_parse(q.get("from"), field="from"),
            end=moment_parse(q.get("to"), field="to"),
            limit=limit,
        )
        if request.accepted_renderer.format == "csv":
            buf = io.StringIO()
            if rows:
                writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
                writer.writeheader()
                for row in rows:
                    writer.writerow(
                        {**row, "ts": row["ts"].isoformat(), "quality_flags": "|".join(row["quality_flags"])}
                    )
            response = HttpResponse(buf.getvalue(), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{resolved.ticker}_{timeframe}_features.csv"'
            return response
        return Response(
            {
                "symbol": resolved.ticker,
                "market": resolved.market.code,
                "timeframe": timeframe,
                "count": len(rows),
                "results": rows,
            }
        )
