"""Give the bootstrap's markets their exchange-calendars code where an operator has not set one."""

from django.db import migrations

CODES = {"BINANCE": "24/7", "BIST": "XIST", "NASDAQ": "XNAS", "NYSE": "XNYS"}


def fill(apps, schema_editor):
    Market = apps.get_model("etl", "Market")
    for code, calendar_code in CODES.items():
        Market.objects.filter(code=code, calendar_code="").update(calendar_code=calendar_code)


def unfill(apps, schema_editor):
    Market = apps.get_model("etl", "Market")
    for code, calendar_code in CODES.items():
        Market.objects.filter(code=code, calendar_code=calendar_code).update(calendar_code="")


class Migration(migrations.Migration):
    dependencies = [("etl", "0008_market_calendar")]

    operations = [migrations.RunPython(fill, unfill)]
