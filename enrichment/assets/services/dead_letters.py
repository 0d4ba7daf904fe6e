"""Enrichment dead letters: symbols every remote source failed, resubmitted with the
options they failed under."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext
from django_q.tasks import async_task

from enrichment.assets.models import DEAD_LETTER_KIND
from enrichment.assets.services.enrich import assets_enrich
from enrichment.assets.services.enrich_options import EnrichOptions
from etl.errors import DomainError
from etl.models import DeadLetter


@dataclass(frozen=True, slots=True)
class ResubmitResult:
    resubmitted: int
    resolved: int
    still_failing: int
    run_ids: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "run_ids": list(self.run_ids)}


def enrichment_dead_letters_resubmit(
    *, ids: list[int] | None = None, requested_by: str = "", client_options: dict | None = None
) -> ResubmitResult:
    """Enrich again the symbols of open enrichment dead letters (all of them, or `ids`),
    each with the options it failed under (one run per distinct set of options).
    A symbol that now gets remote data resolves its letter."""
    letters = DeadLetter.objects.filter(kind=DEAD_LETTER_KIND, resolved_at__isnull=True)
    if ids is not None:
        letters = letters.filter(pk__in=ids)
    letters = list(letters)
    if not letters:
        raise DomainError(gettext("No open enrichment dead letters to resubmit"), code="nothing_to_resubmit")
    groups: dict[str, list[int]] = {}
    for letter in letters:
        stored = {
            k: v
            for k, v in (letter.payload.get("options") or {}).items()
            if k in EnrichOptions.__dataclass_fields__ and k not in {"symbols", "symbol_ids", "selection"}
        }
        if letter.payload.get("symbol_id"):
            groups.setdefault(json.dumps(stored, sort_keys=True), []).append(int(letter.payload["symbol_id"]))
    DeadLetter.objects.filter(pk__in=[dl.pk for dl in letters]).update(resubmitted_at=timezone.now())
    run_ids = []
    for stored_json, symbol_ids in groups.items():
        options = replace(
            EnrichOptions.from_dict(json.loads(stored_json)), symbol_ids=tuple(symbol_ids), selection="all"
        )
        result = assets_enrich(options=options, requested_by=requested_by or "resubmit", client_options=client_options)
        run_ids.append(result.run_id)
    resolved = DeadLetter.objects.filter(pk__in=[dl.pk for dl in letters], resolved_at__isnull=False).count()
    return ResubmitResult(
        resubmitted=len(letters), resolved=resolved, still_failing=len(letters) - resolved, run_ids=tuple(run_ids)
    )


def enrichment_dead_letters_resubmit_queue(*, ids: list[int] | None, requested_by: str) -> int:
    """Queue a resubmit of the open letters among `ids` (all open ones when None) for a worker,
    once the transaction commits; return how many letters it covers. DomainError when none is open."""
    letters = DeadLetter.objects.filter(kind=DEAD_LETTER_KIND, resolved_at__isnull=True)
    if ids is not None:
        letters = letters.filter(pk__in=ids)
    open_ids = list(letters.values_list("pk", flat=True))
    if not open_ids:
        raise DomainError(gettext("No open enrichment dead letters to resubmit"), code="nothing_to_resubmit")
    transaction.on_commit(
        partial(
            async_task,
            "enrichment.assets.tasks.enrichment_dead_letters_resubmit",
            open_ids,
            requested_by,
            group="enrichment",
        )
    )
    return len(open_ids)
