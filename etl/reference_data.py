"""The reference data that bootstrap creates. Plain data, no ORM.

Trading hours are the exchanges' regular sessions in local time (no
pre/post-market, no lunch break: BIST's continuous session runs 10:00-18:00
since 2023). Holidays and early closes come from each market's `calendar_code`
(exchange-calendars, see `etl.calendars`); the weekly sessions serve where it is blank
(FX) and outside exchange-calendars' range.
"""

from __future__ import annotations

from datetime import time

from django.conf import settings

WEEKDAYS = range(0, 5)  # Monday..Friday

ASSET_CLASSES: list[dict] = [
    {"code": "CRYPTO", "name": "Cryptocurrency", "description": "Crypto assets and pairs"},
    {"code": "STOCK", "name": "Stock", "description": "Equity, exchange not specified"},
    {"code": "STOCK_BIST", "name": "Stock (Borsa Istanbul)", "description": "Equities listed on BIST"},
    {"code": "STOCK_NASDAQ", "name": "Stock (NASDAQ)", "description": "Equities listed on NASDAQ"},
    {"code": "STOCK_NYSE", "name": "Stock (NYSE)", "description": "Equities listed on NYSE"},
    {"code": "FOREX", "name": "Foreign exchange", "description": "Currency pairs"},
    {"code": "COMMODITY", "name": "Commodity", "description": "Metals, energy, agriculture"},
    {"code": "ETF", "name": "Exchange-traded fund", "description": "Funds traded like stocks"},
    {"code": "INDICES", "name": "Index", "description": "Market indices such as XU100 or SPX"},
]

MARKETS: list[dict] = [
    {
        "code": "BINANCE",
        "name": "Binance",
        "mic": "",
        "timezone": "UTC",
        "currency": "USDT",
        "country": "",
        "default_asset_class": "CRYPTO",
        "calendar_code": "24/7",
    },
    {
        "code": "BIST",
        "name": "Borsa Istanbul",
        "mic": "XIST",
        "timezone": "Europe/Istanbul",
        "currency": "TRY",
        "country": "TR",
        "default_asset_class": "STOCK_BIST",
        "calendar_code": "XIST",
    },
    {
        "code": "NASDAQ",
        "name": "Nasdaq Stock Market",
        "mic": "XNAS",
        "timezone": "America/New_York",
        "currency": "USD",
        "country": "US",
        "default_asset_class": "STOCK_NASDAQ",
        "calendar_code": "XNAS",
    },
    {
        "code": "NYSE",
        "name": "New York Stock Exchange",
        "mic": "XNYS",
        "timezone": "America/New_York",
        "currency": "USD",
        "country": "US",
        "default_asset_class": "STOCK_NYSE",
        "calendar_code": "XNYS",
    },
    {
        "code": "FOREX_MARKET",
        "name": "Foreign exchange (OTC)",
        "mic": "",
        "timezone": "America/New_York",
        "currency": "USD",
        "country": "",
        "default_asset_class": "FOREX",
        "calendar_code": "",
    },
]


def _weekday_sessions(start: time, end: time) -> list[dict]:
    return [
        {"name": "regular", "start_weekday": d, "start_time": start, "end_weekday": d, "end_time": end}
        for d in WEEKDAYS
    ]


SESSIONS: dict[str, list[dict]] = {
    "BIST": _weekday_sessions(time(10, 0), time(18, 0)),
    "NASDAQ": _weekday_sessions(time(9, 30), time(16, 0)),
    "NYSE": _weekday_sessions(time(9, 30), time(16, 0)),
    # Equal start and end: open the whole week.
    "BINANCE": [
        {"name": "continuous", "start_weekday": 0, "start_time": time(0), "end_weekday": 0, "end_time": time(0)}
    ],
    # The FX week: Sunday 17:00 to Friday 17:00 New York time.
    "FOREX_MARKET": [
        {"name": "fx_week", "start_weekday": 6, "start_time": time(17), "end_weekday": 4, "end_time": time(17)}
    ],
}

PROVIDERS: list[dict] = [
    {
        "code": "BINANCE",
        "name": "Binance USD-M futures",
        "base_url": "https://fapi.binance.com",
        # Binance allows 2400 request weight a minute; most calls weigh 1-10.
        "rate_limit_per_minute": 1200,
        "priority": 10,
        "requires_api_key": False,
        "is_enabled": True,
    },
    {
        "code": "YAHOO_FINANCE",
        "name": "Yahoo Finance",
        "base_url": "https://query2.finance.yahoo.com",
        "rate_limit_per_minute": 60,
        "priority": 20,
        "requires_api_key": False,
        "is_enabled": True,
    },
    {
        "code": "COINMARKETCAP",
        "name": "CoinMarketCap",
        "base_url": "https://pro-api.coinmarketcap.com",
        "rate_limit_per_minute": 30,
        "priority": 30,
        "requires_api_key": True,
        # Providers that need a key start disabled: enable them once the key is set.
        "is_enabled": False,
    },
    {
        "code": "ALPHA_VANTAGE",
        "name": "Alpha Vantage",
        "base_url": "https://www.alphavantage.co",
        "rate_limit_per_minute": 5,
        "priority": 40,
        "requires_api_key": True,
        "is_enabled": False,
    },
    {
        "code": "POLYGON",
        "name": "Polygon.io",
        "base_url": "https://api.polygon.io",
        "rate_limit_per_minute": 5,
        "priority": 50,
        "requires_api_key": True,
        "is_enabled": False,
    },
]

# django-q2 schedules (cron, in the schedule's own time zone).
SCHEDULES: list[dict] = [
    {
        "name": "retention-prune",
        "func": "etl.tasks.retention_prune",
        "cron": "30 3 * * *",
        "cluster": None,
    },
    {
        # The old system's daily enrichment (ENRICHMENT_SCHEDULE_HOUR/MINUTE, UTC).
        "name": "enrichment-daily",
        "func": "etl.tasks.pipeline_scheduled",
        "cron": f"{settings.ENRICHMENT_SCHEDULE_MINUTE} {settings.ENRICHMENT_SCHEDULE_HOUR} * * *",
        "kwargs": repr(
            {
                "schedule_name": "enrichment-daily",
                "cron": f"{settings.ENRICHMENT_SCHEDULE_MINUTE} {settings.ENRICHMENT_SCHEDULE_HOUR} * * *",
                "tz": "UTC",
                "steps": ["enrich", "features"],
            }
        ),
        "cluster": None,
    },
    {
        # Yearly partitions of the candle tables made ahead, and retention by dropping whole
        # partitions when CANDLE_RETENTION_YEARS is set (etl.services.partitions).
        "name": "candle-partitions",
        "func": "etl.tasks.candle_partitions_maintain",
        "cron": "15 3 * * *",
        "cluster": None,
    },
    {
        "name": "integrity-snapshot",
        "func": "etl.tasks.integrity_snapshot",
        "cron": "0 * * * *",
        "cluster": None,
    },
    {
        # Folds the integrity summaries' deltas, the per-symbol tallies included (the status
        # reads fold the rest): keeps what is pending short.
        "name": "summary-fold",
        "func": "etl.tasks.summaries_fold",
        "cron": "*/5 * * * *",
        "cluster": None,
    },
    {
        # Folds the metric deltas (etl.events) every minute whether or not Prometheus scrapes:
        # a scrape then folds at most a minute of them (a bulk import writes ~15 a file).
        "name": "metrics-fold",
        "func": "etl.tasks.metrics_fold",
        "cron": "* * * * *",
        "cluster": None,
    },
    {
        # The full recount of the integrity summaries: reports and repairs drift.
        "name": "summary-recount",
        "func": "etl.tasks.summary_recount",
        "cron": "20 4 * * *",
        "cluster": None,
    },
]
