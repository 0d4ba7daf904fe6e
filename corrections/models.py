"""Asset-class correction runs and their backups.

A run carries one correction from analysis to rollback: its options, its
reports, where execute (or rollback) stopped, and the counts. The backup holds
each changed candle once, with what it was and what the run made it, so a
rollback restores exactly and can tell a row someone changed afterwards.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from etl.models import RunRecord


class Phase(models.TextChoices):
    ANALYZED = "analyzed", pgettext_lazy("correction phase", "analyzed")
    PREVIEWED = "previewed", pgettext_lazy("correction phase", "previewed")
    EXECUTING = "executing", pgettext_lazy("correction phase", "executing")
    EXECUTED = "executed", pgettext_lazy("correction phase", "executed")
    VALIDATED = "validated", pgettext_lazy("correction phase", "validated")
    ROLLING_BACK = "rolling_back", pgettext_lazy("correction phase", "rolling back")
    ROLLED_BACK = "rolled_back", pgettext_lazy("correction phase", "rolled back")


class Scope(models.TextChoices):
    """Which candles execute changes (the old system's options, made one choice)."""

    NULL = "null", _("only NULL (--only-null)")
    MISSING = "missing", _("NULL or empty (default)")
    ALL = "all", _("NULL, empty and mismatched (--overwrite-mismatched)")


class CorrectionRun(RunRecord):
    """One correction. `status` (from RunRecord) says whether work is running
    or how it ended; `phase` says how far the correction has come."""

    phase = models.CharField(_("phase"), max_length=16, choices=Phase.choices, default=Phase.ANALYZED, db_index=True)
    only_null = models.BooleanField(
        _("only null"), default=False, help_text=_("Change only NULL asset classes, not empty ones")
    )
    overwrite_mismatched = models.BooleanField(
        _("overwrite mismatched"),
        default=False,
        help_text=_("Also overwrite a non-empty asset class that differs from the symbol's"),
    )
    batch_size = models.PositiveIntegerField(_("batch size"), default=50_000)
    validate_each_batch = models.BooleanField(_("validate each batch"), default=False)

    # Execute walks market_data ids id_low..id_high (fixed when it starts) in
    # batches; last_id is the end of the last committed batch, written in that
    # batch's own transaction, so a killed run resumes exactly after it.
    id_low = models.BigIntegerField(_("id low"), null=True, blank=True)
    id_high = models.BigIntegerField(_("id high"), null=True, blank=True)
    last_id = models.BigIntegerField(_("last id"), null=True, blank=True)
    batches_done = models.PositiveIntegerField(_("batches done"), default=0)
    rows_updated = models.BigIntegerField(_("rows updated"), default=0)
    executed_at = models.DateTimeField(_("executed at"), null=True, blank=True)

    # Rollback walks the backup the same way.
    rollback_last_id = models.BigIntegerField(_("rollback last id"), null=True, blank=True)
    rows_restored = models.BigIntegerField(_("rows restored"), default=0)
    rollback_conflicts = models.BigIntegerField(_("rollback conflicts"), default=0)
    rollback_reason = models.TextField(_("rollback reason"), blank=True)
    rollback_force = models.BooleanField(_("rollback force"), default=False)
    rolled_back_by = models.CharField(_("rolled back by"), max_length=150, blank=True)
    rolled_back_at = models.DateTimeField(_("rolled back at"), null=True, blank=True)

    analyze_report = models.JSONField(_("analyze report"), null=True, blank=True)
    preview_report = models.JSONField(_("preview report"), null=True, blank=True)
    validation_report = models.JSONField(_("validation report"), null=True, blank=True)
    rollback_report = models.JSONField(_("rollback report"), null=True, blank=True)
    # What the request asked that the run does not act on: {"ignored_options": {name: reason}}.
    options = models.JSONField(_("options"), default=dict, blank=True, db_default={})

    class Meta:
        verbose_name = _("correction run")
        verbose_name_plural = _("correction runs")
        db_table = "correction_runs"
        ordering = ["-id"]
        permissions = [
            ("execute_correction", "Can execute an asset-class correction"),
            ("rollback_correction", "Can roll back an asset-class correction"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~(models.Q(only_null=True) & models.Q(overwrite_mismatched=True)),
                name="correction_scope_one_choice",
            ),
        ]

    def __str__(self) -> str:
        return gettext("correction #%(run)s (%(phase)s)") % {"run": self.pk, "phase": self.get_phase_display()}

    @property
    def scope(self) -> Scope:
        if self.only_null:
            return Scope.NULL
        return Scope.ALL if self.overwrite_mismatched else Scope.MISSING

    @property
    def run_ref(self) -> str:
        return f"correction:{self.pk}"

    @property
    def rows_backed_up(self) -> int:
        return self.backups.count()


class CorrectionBackup(models.Model):
    """Before a batch changes a candle, its id and old value land here, in the
    same transaction. The composite primary key keeps each row once per run,
    whatever happens to the process."""

    pk = models.CompositePrimaryKey("run", "market_data_id")
    # The primary key's leading column already indexes run_id.
    run = models.ForeignKey(CorrectionRun, on_delete=models.CASCADE, related_name="backups", db_index=False)
    # Not a foreign key: a candle deleted after the run must not take its
    # backup with it (rollback reports it as missing).
    market_data_id = models.BigIntegerField()
    old_value = models.CharField(max_length=32, null=True, blank=True)
    old_updated_at = models.DateTimeField(null=True)
    new_value = models.CharField(max_length=32)
    # What execute wrote into updated_at: a row whose updated_at differs was
    # touched after the run, so rollback leaves its updated_at alone.
    new_updated_at = models.DateTimeField()

    class Meta:
        db_table = "correction_backups"

    def __str__(self) -> str:
        return f"run {self.run_id} candle {self.market_data_id}: {self.old_value!r} -> {self.new_value!r}"
