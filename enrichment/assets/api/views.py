"""Asset-enrichment API (the old system's paths under /api/etl/). Views parse, call one service, render."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from enrichment.assets import selectors
from enrichment.assets.models import DEAD_LETTER_KIND, AssetEnrichmentRun
from enrichment.assets.services import dead_letters, discovery, enrich, mapping
from enrichment.assets.services.enrich_options import SELECTIONS, EnrichOptions, old_options_translate
from enrichment.providers.selectors import providers_status
from etl.api.permissions import StaffWithPermission
from etl.api.serializers import DeadLetterSerializer
from etl.models import DeadLetter, SymbolMapping

PERM = ("enrichment.run_enrichment",)
STALE_DAYS_MAX = 3650  # ten years; more overflows date arithmetic and means "all" anyway


class StatusQuerySerializer(serializers.Serializer):
    stale_days = serializers.IntegerField(min_value=1, max_value=STALE_DAYS_MAX, default=30)


class EnrichRequestSerializer(serializers.Serializer):
    sources = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True)
    selection = serializers.ChoiceField(choices=SELECTIONS, default="never")
    stale_days = serializers.IntegerField(min_value=1, max_value=STALE_DAYS_MAX, default=30)
    symbols = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    concurrency = serializers.IntegerField(min_value=1, max_value=16, default=3)
    batch_size = serializers.IntegerField(min_value=1, max_value=10_000, default=50)
    overwrite = serializers.BooleanField(default=False)
    rate_limit_delay = serializers.FloatField(min_value=0, max_value=60, default=0.0)
    max_retries = serializers.IntegerField(min_value=1, max_value=10, default=3)
    timeout = serializers.FloatField(min_value=0.1, max_value=300, required=False, allow_null=True)
    run_async = serializers.BooleanField(default=False, help_text="queue for a worker and answer 202 at once")


class RunSerializer(serializers.ModelSerializer):
    percent = serializers.FloatField(read_only=True, allow_null=True)
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = AssetEnrichmentRun
        fields = [
            "id",
            "status",
            "requested_by",
            "options",
            "created_at",
            "started_at",
            "finished_at",
            "symbols_total",
            "enriched",
            "partial",
            "failed",
            "dead_lettered",
            "progress_done",
            "progress_total",
            "percent",
            "eta_seconds",
            "error",
        ]


class ResubmitRequestSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(), required=False, allow_null=True)
    run_async = serializers.BooleanField(default=False)


class DiscoverRequestSerializer(serializers.Serializer):
    provider = serializers.CharField(default="BINANCE")
    quote_assets = serializers.ListField(child=serializers.CharField(), default=["USDT"])


class EnrichAssetsView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = PERM

    @extend_schema(request=EnrichRequestSerializer, responses={200: dict, 202: RunSerializer})
    def post(self, request):
        """Calls enrich.asset_enrichment_queue (run_async) or enrich.assets_enrich."""
        # The old system's option names are accepted too.
        if not hasattr(request.data, "items"):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object of options."]})
        raw = request.data.dict() if hasattr(request.data, "dict") else dict(request.data)
        params = EnrichRequestSerializer(data=old_options_translate(raw))
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        run_async = data.pop("run_async")
        options = EnrichOptions.from_dict(data)
        who = request.user.get_username()
        if run_async:
            run = enrich.asset_enrichment_queue(options=options, requested_by=who)
            return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
        return Response(enrich.assets_enrich(options=options, requested_by=who).to_dict())


class EnrichmentStatusView(APIView):
    @extend_schema(parameters=[StatusQuerySerializer], responses={200: dict})
    def get(self, request):
        """Calls selectors.enrichment_status."""
        query = StatusQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(selectors.enrichment_status(stale_days=query.validated_data["stale_days"]))


class EnrichmentRunView(APIView):
    @extend_schema(responses={200: RunSerializer})
    def get(self, request, pk: int):
        """Reads one run."""
        return Response(RunSerializer(get_object_or_404(AssetEnrichmentRun, pk=pk)).data)


class EnrichmentSourcesStatusView(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request):
        """Calls providers_status."""
        return Response({"providers": [h.to_dict() for h in providers_status()]})


class DeadLetterListView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("include_resolved", bool, required=False)],
        responses={200: DeadLetterSerializer(many=True)},
    )
    def get(self, request):
        """Reads the enrichment dead letters."""
        qs = DeadLetter.objects.filter(kind=DEAD_LETTER_KIND).order_by("-created_at")
        if request.query_params.get("include_resolved") not in {"1", "true", "yes"}:
            qs = qs.filter(resolved_at__isnull=True)
        return Response(DeadLetterSerializer(qs[:500], many=True).data)


class DeadLetterResubmitView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = PERM

    @extend_schema(request=ResubmitRequestSerializer, responses={200: dict, 202: dict})
    def post(self, request):
        """Calls dead_letters.enrichment_dead_letters_resubmit_queue (run_async) or ..._resubmit."""
        params = ResubmitRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        ids = params.validated_data.get("ids")
        who = request.user.get_username()
        if params.validated_data["run_async"]:
            queued = dead_letters.enrichment_dead_letters_resubmit_queue(ids=ids, requested_by=who)
            return Response({"status": "queued", "dead_letters": queued}, status=status.HTTP_202_ACCEPTED)
        return Response(dead_letters.enrichment_dead_letters_resubmit(ids=ids, requested_by=who).to_dict())


class DiscoverSymbolsView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = PERM

    @extend_schema(request=DiscoverRequestSerializer, responses={200: dict})
    def post(self, request):
        """Calls discovery.symbols_discover."""
        params = DiscoverRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        result = discovery.symbols_discover(
            provider_code=params.validated_data["provider"].upper(),
            quote_assets=tuple(params.validated_data["quote_assets"]),
        )
        return Response(result.to_dict())


class MappingValidateView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = PERM

    @extend_schema(request=None, responses={200: dict})
    def post(self, request, pk: int):
        """Calls mapping.mapping_validate."""
        m = get_object_or_404(SymbolMapping.objects.select_related("provider", "symbol"), pk=pk)
        valid = mapping.mapping_validate(mapping=m)
        return Response(
            {"id": m.pk, "provider": m.provider.code, "provider_symbol": m.provider_symbol, "is_valid": valid}
        )
