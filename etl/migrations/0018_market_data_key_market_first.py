"""The natural key of market_data in the order files arrive: (market, ticker, timeframe, ts).

A scraper folder is one file per symbol under a folder per market (BIST/THYAO.csv,
NASDAQ/AAPL.csv), and an import works its files in path order. With the market first, a bulk
import appends to the key index's right end (pages left 90 % full) instead of splitting pages in
the middle for every ticker of a second market (59 % full: 61 bytes a candle instead of ~40;
docs/storage.md). ON CONFLICT (ticker, market, timeframe, ts) names the same key: PostgreSQL
infers the index from the set of columns, whatever their order.

Existing databases: one ALTER TABLE rebuilds the key on every partition under ACCESS EXCLUSIVE
(about as long as building an index over the table: stop the workers first, docs/storage.md);
the reverse rebuilds the old order.
"""

from django.db import migrations, models

KEY = "ALTER TABLE market_data DROP CONSTRAINT uniq_market_data_bar, ADD CONSTRAINT uniq_market_data_bar PRIMARY KEY ({})"


class Migration(migrations.Migration):
    dependencies = [("etl", "0017_market_data_updated_brin_scan_marks")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    KEY.format("market, ticker, timeframe, ts"), reverse_sql=KEY.format("ticker, market, timeframe, ts")
                )
            ],
            state_operations=[
                migrations.RemoveConstraint(model_name="marketdata", name="uniq_market_data_bar"),
                migrations.AddConstraint(
                    model_name="marketdata",
                    constraint=models.UniqueConstraint(
                        fields=("market", "ticker", "timeframe", "ts"), name="uniq_market_data_bar"
                    ),
                ),
            ],
        )
    ]
