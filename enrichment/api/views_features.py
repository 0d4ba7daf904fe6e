"""API of the feature side (seed paths under /api/v1/)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from functools import partial

from django.db import transaction
from django.http import HttpResponse
from django.utils.dateparse import parse_date, parse_datetime
from django_q.tasks import async_task
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from enrichment import selectors_candles as sel
from enrichment.services import features as service
from etl.api.permissions import StaffWithPermission
from etl.errors import DomainError


def _moment(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    from datetime import UTC, time

    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise DomainError(f"{name}: {value!r} is not an ISO date or date-time", code="bad_date")
        moment = datetime.combine(day, time())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
        return Response(sel.enrichment_status_for_symbol(symbol=service.symbol_resolve(symbol)))


class EnrichmentMetricsView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response(sel.enrichment_metrics())


class EnrichmentTriggerView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = ("enrichment.compute_features",)

    @extend_schema(request=TriggerSerializer, responses={200: dict, 202: dict, 400: dict})
    def post(self, request):
        params = TriggerSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        service.symbols_from_params(data["symbols"])
        for tf in data["timeframes"]:
            service.parse_timeframe(tf)
        run = service.feature_run_create(
            params={"symbols": data["symbols"], "timeframes": data["timeframes"], "full": data["full"]},
            requested_by=request.user.get_username(),
        )
        if data["run_async"]:
            transaction.on_commit(
                partial(async_task, "enrichment.tasks_features.feature_run_execute", run.pk, group="enrichment")
            )
            return Response({"run_id": run.pk, "status": "queued"}, status=status.HTTP_202_ACCEPTED)
        return Response({"run_id": run.pk, **service.feature_run_execute(run=run).to_dict()})


class DataQualityView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("timeframe", str), OpenApiParameter("from", str), OpenApiParameter("to", str)],
        responses={200: dict},
    )
    def get(self, request, symbol: str):
        q = request.query_params
        start, end = _moment(q.get("from"), "from"), _moment(q.get("to"), "to")
        return Response(
            sel.quality_for_symbol(
                symbol=service.symbol_resolve(symbol),
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
            OpenApiParameter("limit", int, description=f"last N bars of the range, at most {sel.MAX_FEATURE_ROWS}"),
            OpenApiParameter("format", str, enum=["json", "csv"]),
        ],
        responses={200: dict},
    )
    def get(self, request, symbol: str, timeframe: str):
        q = request.query_params
        service.parse_timeframe(timeframe)
        try:
            limit = int(q.get("limit", 1000))
        except ValueError:
            raise DomainError(f"limit: {q.get('limit')!r} is not a number", code="bad_limit") from None
        resolved = service.symbol_resolve(symbol)
        rows = sel.feature_rows(
            symbol=resolved, timeframe=timeframe, start=_moment(q.get("from"), "from"), end=_moment(q.get("to"), "to"),
            limit=limit,
        )  # fmt: skip
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
            }  # fmt: skip
        )
