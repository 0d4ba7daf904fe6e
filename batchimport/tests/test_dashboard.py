from __future__ import annotations

import pytest
from django.utils import timezone

from batchimport.models import ImportJob

pytestmark = pytest.mark.django_db


def test_sla_panel_shows_compliance_per_market_with_links(admin_client):
    now = timezone.now()
    for breached in (True, False):
        ImportJob.objects.create(
            market="BIST", path="/x", status="succeeded", started_at=now, finished_at=now, sla_breached=breached
        )
    page = admin_client.get("/admin/").content.decode()
    assert 'id="panel-import_sla"' in page
    assert "50 %" in page
    assert "market__exact=BIST&amp;sla_breached__exact=1" in page
