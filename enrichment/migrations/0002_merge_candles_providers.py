# The candle side (0001_candles) and the provider side (0001_providers) were built on
# separate branches, each as an initial migration; this joins the two histories.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("enrichment", "0001_candles"),
        ("enrichment", "0001_providers"),
    ]

    operations = []
