"""Asset enrichment's models: runs and their per-symbol results, and the admin
proxies over etl's tables (symbols to enrich, the mapping editor, dead letters)."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from etl.models import DeadLetter, RunRecord, Symbol, SymbolMapping

# etl's dead-letter table tells the apps' letters apart by kind; this is ours.
DEAD_LETTER_KIND = "enrichment"

__all__ = [
    "DEAD_LETTER_KIND",
    "AssetEnrichmentRun",
    "AssetEnrichmentResult",
    "SymbolForEnrichment",
    "ProviderMapping",
    "EnrichmentDeadLetter",
]


class AssetEnrichmentRun(RunRecord):
    """One asset-enrichment run: what was asked, and the outcome counts."""

    options = models.JSONField(_("options"), default=dict)
    symbols_total = models.PositiveIntegerField(_("symbols total"), default=0)
    enriched = models.PositiveIntegerField(_("enriched"), default=0)
    partial = models.PositiveIntegerField(_("partial"), default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0)
    skipped = models.PositiveIntegerField(_("skipped"), default=0)
    dead_lettered = models.PositiveIntegerField(_("dead lettered"), default=0)

    class Meta:
        verbose_name = _("asset enrichment run")
        verbose_name_plural = _("asset enrichment runs")
        db_table = "enrichment_asset_runs"
        ordering = ["-created_at"]
        permissions = [("run_enrichment", "Can run asset enrichment and resubmit its dead letters")]

    def __str__(self) -> str:
        return gettext("asset enrichment #%(run)s %(status)s") % {"run": self.pk, "status": self.get_status_display()}


class AssetEnrichmentResult(models.Model):
    """The outcome for one symbol in one run, with its quality dimensions."""

    class Outcome(models.TextChoices):
        ENRICHED = "enriched", _("Enriched")
        PARTIAL = "partial", _("Partial")
        FAILED = "failed", pgettext_lazy("outcome", "Failed")

    run = models.ForeignKey(AssetEnrichmentRun, on_delete=models.CASCADE, related_name="results", verbose_name=_("run"))
    symbol = models.ForeignKey(
        Symbol, on_delete=models.CASCADE, related_name="enrichment_results", verbose_name=_("symbol")
    )
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    sources = models.JSONField(
        _("sources"), default=dict, help_text=_("per source: ok / empty / failed / unavailable, and why")
    )
    fields_updated = models.JSONField(_("fields updated"), default=list)
    quality_score = models.PositiveSmallIntegerField(_("quality score"), null=True, blank=True)
    completeness = models.FloatField(_("completeness"), null=True, blank=True)
    freshness = models.FloatField(_("freshness"), null=True, blank=True)
    agreement = models.FloatField(_("agreement"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_default=Now())

    class Meta:
        verbose_name = _("asset enrichment result")
        verbose_name_plural = _("asset enrichment results")
        db_table = "enrichment_asset_results"
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["run", "symbol"], name="uniq_enrichment_result_run_symbol")]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.get_outcome_display()}"


# Admin proxies: pages of this app over etl's tables, so the enrichment admin
# ("enrich selected", mapping editor, dead-letter resubmit) lives here without
# editing etl/admin.py.
class SymbolForEnrichment(Symbol):
    class Meta:
        proxy = True
        verbose_name = _("symbol enrichment")
        verbose_name_plural = _("symbol enrichment")


class ProviderMapping(SymbolMapping):
    class Meta:
        proxy = True
        verbose_name = _("provider symbol mapping")
        verbose_name_plural = _("provider symbol mappings (editor)")


class EnrichmentDeadLetter(DeadLetter):
    class Meta:
        proxy = True
        verbose_name = _("enrichment dead letter")
        verbose_name_plural = _("enrichment dead letters")
