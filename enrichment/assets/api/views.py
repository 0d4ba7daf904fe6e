"""Asset-enrichment API (the old system's paths under /api/etl/) and its runs as a
resource (/api/runs/asset-enrichment/). Views parse with the request policy, call
one service, render; enrich-assets answers 202 with the run and its Location
unless `runAsync: false`."""

from __future__ import annotations

from typing import Any, ClassVar

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from enrichment.assets import selectors
from enrichment.assets.api import serializers as s
from enrichment.assets.models import DEAD_LETTER_KIND, AssetEnrichmentRun
from enrichment.assets.services import dead_letters, discovery, enrich, mapping
from enrichment.assets.services.enrich_options import EnrichOptions
from enrichment.providers.selectors import providers_status
from etl.api.permissions import StaffWithPermission
from etl.api.request_policy import PolicyViewMixin, ignored_options_record, old_names_add
from etl.api.runs import RunListQuery, RunViewSet, accepted
from etl.api.serializers import DeadLetterSerializer, ErrorSerializer
from etl.models import DeadLetter, SymbolMapping

PERM = ("enrichment.run_enrichment",)
RUN_DETAIL = "asset-enrichment-run-detail"
DEAD_LETTERS_MAX = 500


def run_accepted(request, run: AssetEnrichmentRun) -> Response:
    """202 with the queued run and its Location."""
    return accepted(request, dict(s.RunSerializer(run).data), url_name=RUN_DETAIL, run_id=run.pk)


class EnrichAssetsView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = PERM

    @extend_schema(
        request=s.EnrichRequestSerializer,
        responses={200: s.EnrichResultSerializer, 202: s.RunAcceptedSerializer, 400: ErrorSerializer},
    )
    def post(self, request):
        """Calls enrich.asset_enrichment_queue (the default) or enrich.assets_enrich (`runAsync: false`)."""
        data = dict(self.policy_body(s.EnrichRequestSerializer).validated_data)
        run_async = data.pop("run_async")
        options = EnrichOptions.from_dict(data)
        who = request.user.get_username()
        if run_async:
            enrich.assets_select(options=options)  # an unknown symbol: a 400 now, not a failed run later
            run = enrich.asset_enrichment_queue(options=options, requested_by=who)
            ignored_options_record(run=run, ignored=self.ignored_options)
            return run_accepted(request, run)
        result = enrich.assets_enrich(options=options, requested_by=who)
        ignored_options_record(run=AssetEnrichmentRun(pk=result.run_id), ignored=self.ignored_options)
        return Response(old_names_add(result.to_dict(), s.ENRICH_OLD_NAMES))


class EnrichmentStatusView(PolicyViewMixin, APIView):
    @extend_schema(
        parameters=[s.StatusQuerySerializer], responses={200: s.EnrichmentStatusSerializer, 400: ErrorSerializer}
    )
    def get(self, request):
        """Calls selectors.enrichment_status."""
        stale_days = self.policy_query(s.StatusQuerySerializer).validated_data["stale_days"]
        return Response(old_names_add(selectors.enrichment_status(stale_days=stale_days), s.STATUS_OLD_NAMES))


class EnrichmentRunView(APIView):
    """The old path of one run; /api/runs/asset-enrichment/{id}/ is the same."""

    @extend_schema(responses={200: s.RunSerializer, 404: ErrorSerializer})
    def get(self, request, pk: int):
        """Reads one run."""
        return Response(s.RunSerializer(get_object_or_404(AssetEnrichmentRun, pk=pk)).data)


class EnrichmentSourcesStatusView(APIView):
    @extend_schema(responses={200: s.SourcesStatusSerializer})
    def get(self, request):
        """Calls providers_status."""
        return Response({"providers": [h.to_dict() for h in providers_status()]})


class DeadLetterListView(PolicyViewMixin, APIView):
    @extend_schema(
        parameters=[s.DeadLetterQuerySerializer],
        responses={200: DeadLetterSerializer(many=True), 400: ErrorSerializer},
    )
    def get(self, request):
        """Reads the enrichment dead letters (newest first, the latest DEAD_LETTERS_MAX)."""
        include_resolved = self.policy_query(s.DeadLetterQuerySerializer).validated_data["include_resolved"]
        qs = DeadLetter.objects.filter(kind=DEAD_LETTER_KIND).order_by("-created_at")
        if not include_resolved:
            qs = qs.filter(resolved_at__isnull=True)
        return Response(DeadLetterSerializer(qs[:DEAD_LETTERS_MAX], many=True).data)


class DeadLetterResubmitView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = PERM

    @extend_schema(
        request=s.ResubmitRequestSerializer,
        responses={200: s.ResubmitResultSerializer, 202: s.ResubmitQueuedSerializer, 400: ErrorSerializer},
    )
    def post(self, request):
        """Calls dead_letters.enrichment_dead_letters_resubmit_queue (run_async) or ..._resubmit."""
        data = self.policy_body(s.ResubmitRequestSerializer).validated_data
        ids = data.get("ids")
        who = request.user.get_username()
        if data["run_async"]:
            queued = dead_letters.enrichment_dead_letters_resubmit_queue(ids=ids, requested_by=who)
            return Response({"status": "queued", "dead_letters": queued}, status=status.HTTP_202_ACCEPTED)
        return Response(dead_letters.enrichment_dead_letters_resubmit(ids=ids, requested_by=who).to_dict())


class DiscoverSymbolsView(PolicyViewMixin, APIView):
    permission_classes = [StaffWithPermission]
    required_perms = PERM

    @extend_schema(
        request=s.DiscoverRequestSerializer, responses={200: s.DiscoverResultSerializer, 400: ErrorSerializer}
    )
    def post(self, request):
        """Calls discovery.symbols_discover."""
        data = self.policy_body(s.DiscoverRequestSerializer).validated_data
        result = discovery.symbols_discover(
            provider_code=data["provider"].upper(), quote_assets=tuple(data["quote_assets"])
        )
        return Response(result.to_dict())


class MappingValidateView(APIView):
    permission_classes = [StaffWithPermission]
    required_perms = PERM

    @extend_schema(request=None, responses={200: s.MappingValidationSerializer, 404: ErrorSerializer})
    def post(self, request, pk: int):
        """Calls mapping.mapping_validate."""
        m = get_object_or_404(SymbolMapping.objects.select_related("provider", "symbol"), pk=pk)
        valid = mapping.mapping_validate(mapping=m)
        return Response(
            {"id": m.pk, "provider": m.provider.code, "provider_symbol": m.provider_symbol, "is_valid": valid}
        )


def _options_again(run: AssetEnrichmentRun) -> EnrichOptions:
    """The options a run was given, to run them again (what it ignored stays behind)."""
    options: dict[str, Any] = {k: v for k, v in (run.options or {}).items() if k != "ignored_options"}
    return EnrichOptions.from_dict(options)


@extend_schema_view(
    list=extend_schema(parameters=[RunListQuery], responses={200: s.RunSerializer(many=True)}),
    retrieve=extend_schema(responses={200: s.RunSerializer, 404: ErrorSerializer}),
)
class AssetEnrichmentRunViewSet(RunViewSet):
    """Asset-enrichment runs (one kind of run: the `kind` filter selects nothing more)."""

    queryset = AssetEnrichmentRun.objects.all()
    serializer_class = s.RunSerializer
    action_perms: ClassVar = {"cancel": PERM, "retry": PERM}

    @extend_schema(request=None, responses={200: s.RunSerializer, 404: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """enrich.asset_enrichment_runs_cancel, as the admin's: the run stops between batches."""
        run = self.get_object()
        enrich.asset_enrichment_runs_cancel(runs=AssetEnrichmentRun.objects.filter(pk=run.pk))
        run.refresh_from_db()
        return Response(s.RunSerializer(run).data)

    @extend_schema(request=None, responses={202: s.RunAcceptedSerializer, 400: ErrorSerializer, 404: ErrorSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """enrich.asset_enrichment_queue: a new queued run with this run's options."""
        again = _options_again(self.get_object())
        return run_accepted(
            request, enrich.asset_enrichment_queue(options=again, requested_by=request.user.get_username())
        )
