"""Provider payloads in the vendors' exact shapes (FORMATS.md and the recorded
Yahoo v8 chart answer), generated here rather than copied from recordings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def yahoo_chart(
    symbol: str,
    *,
    start: datetime,
    bars: int,
    step: timedelta = timedelta(days=1),
    null_at: tuple[int, ...] = (),
    long_name: str = "NVIDIA Corporation",
    currency: str = "USD",
    instrument: str = "EQUITY",
    exchange: str = "NMS",
    tz: str = "America/New_York",
) -> dict[str, Any]:
    stamps = [int((start + i * step).timestamp()) for i in range(bars)]
    closes = [100.0 + i + 0.25 for i in range(bars)]
    quote: dict[str, list] = {
        "volume": [1_000_000 + 1000 * i for i in range(bars)],
        "close": closes,
        "open": [c - 0.5 for c in closes],
        "low": [c - 1.5 for c in closes],
        "high": [c + 1.0 for c in closes],
    }
    for i in null_at:
        for key in quote:
            quote[key][i] = None
    return {
        "chart": {
            "result": [
                {
                    "meta": {
                        "currency": currency,
                        "symbol": symbol,
                        "exchangeName": exchange,
                        "fullExchangeName": "NasdaqGS",
                        "instrumentType": instrument,
                        "firstTradeDate": 917015400,
                        "regularMarketTime": stamps[-1] if stamps else 0,
                        "hasPrePostMarketData": True,
                        "gmtoffset": -14400,
                        "timezone": "EDT",
                        "exchangeTimezoneName": tz,
                        "regularMarketPrice": closes[-1] if closes else None,
                        "longName": long_name,
                        "shortName": long_name,
                        "chartPreviousClose": 99.0,
                        "priceHint": 2,
                        "currentTradingPeriod": {
                            "pre": {"timezone": "EDT", "end": 1790343000, "start": 1790323200, "gmtoffset": -14400},
                            "regular": {"timezone": "EDT", "end": 1790366400, "start": 1790343000, "gmtoffset": -14400},
                            "post": {"timezone": "EDT", "end": 1790380800, "start": 1790366400, "gmtoffset": -14400},
                        },
                        "dataGranularity": "1d",
                        "range": "",
                        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
                    },
                    "timestamp": stamps,
                    "events": {"dividends": {str(stamps[0]): {"amount": 0.25, "date": stamps[0]}}} if stamps else {},
                    "indicators": {"quote": [quote], "adjclose": [{"adjclose": list(quote["close"])}]},
                }
            ],
            "error": None,
        }
    }


def yahoo_not_found() -> dict[str, Any]:
    return {
        "chart": {
            "result": None,
            "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
        }
    }


def binance_kline(open_ms: int, i: int, interval_ms: int = 3_600_000) -> list:
    o = 100.0 + i
    return [
        open_ms,
        f"{o:.2f}",
        f"{o + 2:.2f}",
        f"{o - 1:.2f}",
        f"{o + 1:.2f}",
        f"{10 + i:.3f}",
        open_ms + interval_ms - 1,
        f"{(10 + i) * o:.4f}",
        100 + i,
        f"{(10 + i) / 2:.3f}",
        f"{(10 + i) / 2 * o:.4f}",
        "0",
    ]


def binance_long_short(symbol: str, timestamp_ms: int, ratio: float) -> dict[str, Any]:
    """One row of /futures/data/globalLongShortAccountRatio (strings, as Binance sends them)."""
    long_share = ratio / (1 + ratio)
    return {
        "symbol": symbol,
        "longShortRatio": f"{ratio:.4f}",
        "longAccount": f"{long_share:.4f}",
        "shortAccount": f"{1 - long_share:.4f}",
        "timestamp": str(timestamp_ms),
    }


def binance_taker_ratio(timestamp_ms: int, buy: float, sell: float) -> dict[str, Any]:
    """One row of /futures/data/takerlongshortRatio."""
    return {
        "buySellRatio": f"{buy / sell:.4f}",
        "buyVol": f"{buy:.4f}",
        "sellVol": f"{sell:.4f}",
        "timestamp": timestamp_ms,
    }


def binance_exchange_info(symbols: list[tuple[str, str, str]]) -> dict[str, Any]:
    """symbols: (symbol, base, quote)."""
    return {
        "timezone": "UTC",
        "serverTime": 1_700_000_000_000,
        "futuresType": "U_MARGINED",
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}],
        "exchangeFilters": [],
        "assets": [],
        "symbols": [
            {
                "symbol": sym,
                "pair": sym,
                "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000,
                "status": "TRADING",
                "baseAsset": base,
                "quoteAsset": quote,
                "marginAsset": quote,
                "pricePrecision": 2,
                "quantityPrecision": 3,
                "underlyingType": "COIN",
                "underlyingSubType": ["PoW"] if base == "BTC" else ["Layer-1"],
                "filters": [],
                "orderTypes": ["LIMIT", "MARKET"],
                "timeInForce": ["GTC"],
            }
            for sym, base, quote in symbols
        ],
    }


def polygon_aggs(start: datetime, bars: int, *, next_url: str | None = None, offset: int = 0) -> dict[str, Any]:
    results = []
    for i in range(bars):
        t = int((start + timedelta(days=offset + i)).timestamp() * 1000)
        o = 50.0 + offset + i
        results.append(
            {"v": 1000.0 + i, "vw": o + 0.1, "o": o, "c": o + 0.5, "h": o + 1, "l": o - 1, "t": t, "n": 10 + i}
        )
    payload = {
        "ticker": "X:BTCUSD",
        "queryCount": bars,
        "resultsCount": bars,
        "adjusted": True,
        "results": results,
        "status": "OK",
        "request_id": "6a7e466379af0a71039d60cc78e72282",
        "count": bars,
    }
    if next_url:
        payload["next_url"] = next_url
    return payload


def polygon_ticker(ticker: str = "AAPL") -> dict[str, Any]:
    return {
        "request_id": "31d59dda-80e5-4721-8496-d0d32a654afe",
        "results": {
            "ticker": ticker,
            "name": "Apple Inc.",
            "market": "stocks",
            "locale": "us",
            "primary_exchange": "XNAS",
            "type": "CS",
            "active": True,
            "currency_name": "usd",
            "cik": "0000320193",
            "market_cap": 2771126040150.0,
            "description": "Apple designs a wide variety of consumer electronic devices.",
            "homepage_url": "https://www.apple.com",
            "sic_description": "ELECTRONIC COMPUTERS",
            "total_employees": 154000,
        },
        "status": "OK",
    }


def cmc_info(symbol: str = "BTC", name: str = "Bitcoin") -> dict[str, Any]:
    return {
        "status": {
            "timestamp": "2024-01-01T00:00:00.000Z",
            "error_code": 0,
            "error_message": None,
            "elapsed": 10,
            "credit_count": 1,
        },
        "data": {
            symbol: {
                "id": 1,
                "name": name,
                "symbol": symbol,
                "slug": name.lower(),
                "category": "coin",
                "description": f"{name} ({symbol}) is a cryptocurrency.",
                "logo": "https://s2.coinmarketcap.com/static/img/coins/64x64/1.png",
                "urls": {"website": [f"https://{name.lower()}.org/"], "twitter": [], "reddit": [], "source_code": []},
                "tags": ["mineable", "pow"],
                "platform": None,
                "date_added": "2013-04-28T00:00:00.000Z",
            }
        },
    }


def cmc_error(code: int, message: str) -> dict[str, Any]:
    return {"status": {"timestamp": "2024-01-01T00:00:00.000Z", "error_code": code, "error_message": message}}


def av_overview(symbol: str = "IBM") -> dict[str, str]:
    return {
        "Symbol": symbol,
        "AssetType": "Common Stock",
        "Name": "International Business Machines",
        "Description": "IBM is an American multinational technology company.",
        "CIK": "51143",
        "Exchange": "NYSE",
        "Currency": "USD",
        "Country": "USA",
        "Sector": "TECHNOLOGY",
        "Industry": "COMPUTER & OFFICE EQUIPMENT",
        "OfficialSite": "https://www.ibm.com",
        "MarketCapitalization": "189000000000",
        "EBITDA": "None",
        "PERatio": "22.5",
        "DividendYield": "None",
    }


AV_NOTE = {
    "Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute"
    " and 500 calls per day."
}
AV_INFORMATION = {
    "Information": "We have detected your API key as ... and our standard API rate limit is 25 requests per day."
}

T0 = datetime(2024, 1, 1, tzinfo=UTC)


# Yahoo v7 quote: the crumb handshake, then one row per symbol it knows (unknown ones are left out).
YAHOO_CRUMB = "kQ7mZ2p.vX9"
YAHOO_COOKIE = "A3=d=AQABBGVw2mQCEHt0&S=AQAAAmYq; Path=/; HttpOnly"


def yahoo_quote_row(
    symbol: str,
    *,
    long_name: str,
    currency: str = "USD",
    quote_type: str = "EQUITY",
    market_cap: float | None = 2.8e12,
    tz: str = "America/New_York",
    exchange: str = "NMS",
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "language": "en-US",
        "region": "US",
        "quoteType": quote_type,
        "typeDisp": quote_type.title(),
        "quoteSourceName": "Nasdaq Real Time Price",
        "triggerable": True,
        "currency": currency,
        "exchange": exchange,
        "shortName": long_name[:30],
        "longName": long_name,
        "messageBoardId": f"finmb_{symbol}",
        "exchangeTimezoneName": tz,
        "exchangeTimezoneShortName": "EDT",
        "gmtOffSetMilliseconds": -14400000,
        "market": "us_market",
        "esgPopulated": False,
        "regularMarketPrice": 189.84,
        "fullExchangeName": "NasdaqGS",
        "sourceInterval": 15,
        "exchangeDataDelayedBy": 0,
        "symbol": symbol,
    }
    if market_cap is not None:
        row["marketCap"] = market_cap
    return row


def yahoo_quote(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"quoteResponse": {"result": rows, "error": None}}


YAHOO_INVALID_CRUMB = {"finance": {"result": None, "error": {"code": "Unauthorized", "description": "Invalid Crumb"}}}


def serve_yahoo_handshake(httpserver) -> None:
    """The cookie page (a 404 that sets the cookie, as fc.yahoo.com does) and the crumb."""
    httpserver.expect_request("/").respond_with_data("", status=404, headers={"Set-Cookie": YAHOO_COOKIE})
    httpserver.expect_request("/v1/test/getcrumb").respond_with_data(YAHOO_CRUMB, content_type="text/plain")


def serve_yahoo_quote(httpserver, symbols: str, rows: list[dict[str, Any]]) -> None:
    """The handshake and one quote answer for `symbols` (comma-separated, as sent)."""
    serve_yahoo_handshake(httpserver)
    httpserver.expect_request(
        "/v7/finance/quote", query_string={"symbols": symbols, "crumb": YAHOO_CRUMB}
    ).respond_with_json(yahoo_quote(rows))
