"""An old history file meets years market_data has no partition for: the import makes them."""

from __future__ import annotations

import pytest

from batchimport import services
from batchimport.parsing import STANDARD_HEADER
from batchimport.services.loader import INSERT_SQL
from etl.models import MarketData
from etl.services.partitions import partition_years

pytestmark = pytest.mark.django_db


def test_a_file_of_years_without_partitions_is_imported_into_new_partitions(data_root):
    assert not {1971, 1972} & set(partition_years("market_data"))
    folder = data_root / "NASDAQ"
    folder.mkdir()
    lines = [",".join(STANDARD_HEADER)]
    lines += [f"OLDCO,{day},1.5,2,1,1.75,1.75,100" for day in ("1971-12-30", "1971-12-31", "1972-01-03")]
    (folder / "OLDCO.csv").write_text("\n".join(lines) + "\n")
    job = services.import_job_start(job=services.import_job_create(path="NASDAQ", market="NASDAQ"))
    assert (job.status, job.rows_inserted, job.rows_rejected) == ("succeeded", 3, 0)
    assert {1971, 1972} <= set(partition_years("market_data"))
    assert sorted(MarketData.objects.filter(ticker="OLDCO").values_list("ts__year", flat=True)) == [1971, 1971, 1972]
    # The second import of the same span finds its partitions and conflicts on the key as before.
    assert "ON CONFLICT (ticker, market, timeframe, ts)" in INSERT_SQL
