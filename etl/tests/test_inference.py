"""Inference on ticker shapes from every market the scraper and providers feed
(FORMATS.md): BIST, Crypto (Binance), NASDAQ, NYSE, FX, Yahoo spellings."""

from __future__ import annotations

import pytest

from etl.inference import canonical_market, infer_symbol, normalize_ticker, split_crypto_pair, split_fx_pair


@pytest.mark.parametrize(
    ("ticker", "market", "expected"),
    [
        # Binance spot/futures pairs (Crypto folder, Binance klines archives).
        ("BTCUSDT", "BINANCE", ("BTCUSDT", "BINANCE", "CRYPTO", "BTC", "USDT")),
        ("ETHUSDT", "CRYPTO", ("ETHUSDT", "BINANCE", "CRYPTO", "ETH", "USDT")),
        ("ADABTC", "BINANCE", ("ADABTC", "BINANCE", "CRYPTO", "ADA", "BTC")),
        ("BNBFDUSD", "BINANCE", ("BNBFDUSD", "BINANCE", "CRYPTO", "BNB", "FDUSD")),
        ("1000SHIBUSDT", "BINANCE", ("1000SHIBUSDT", "BINANCE", "CRYPTO", "1000SHIB", "USDT")),
        ("btcusdt ", "binance", ("BTCUSDT", "BINANCE", "CRYPTO", "BTC", "USDT")),
        # Borsa Istanbul: scraper file names and the Yahoo suffix.
        ("THYAO", "BIST", ("THYAO", "BIST", "STOCK_BIST", "THYAO", "TRY")),
        ("THYAO.IS", "BIST", ("THYAO", "BIST", "STOCK_BIST", "THYAO", "TRY")),
        ("AGROT", "XIST", ("AGROT", "BIST", "STOCK_BIST", "AGROT", "TRY")),
        ("XU100", "BIST", ("XU100", "BIST", "INDICES", "", "TRY")),
        # NASDAQ / NYSE equities and ETFs (yfinance / Yahoo downloads).
        ("AAPL", "NASDAQ", ("AAPL", "NASDAQ", "STOCK_NASDAQ", "AAPL", "USD")),
        ("NVDA", "XNAS", ("NVDA", "NASDAQ", "STOCK_NASDAQ", "NVDA", "USD")),
        ("CALM", "NASDAQ", ("CALM", "NASDAQ", "STOCK_NASDAQ", "CALM", "USD")),
        ("QQQ", "NASDAQ", ("QQQ", "NASDAQ", "ETF", "QQQ", "USD")),
        ("ORCL", "NYSE", ("ORCL", "NYSE", "STOCK_NYSE", "ORCL", "USD")),
        ("BRK.B", "NYSE", ("BRK.B", "NYSE", "STOCK_NYSE", "BRK.B", "USD")),
        ("SPY", "NYSE", ("SPY", "NYSE", "ETF", "SPY", "USD")),
        ("^GSPC", "NYSE", ("^GSPC", "NYSE", "INDICES", "", "USD")),
        # FX pairs and metals, in the spellings providers use.
        ("EURUSD", "FOREX_MARKET", ("EURUSD", "FOREX_MARKET", "FOREX", "EUR", "USD")),
        ("USDTRY", "FOREX", ("USDTRY", "FOREX_MARKET", "FOREX", "USD", "TRY")),
        ("EUR/USD", "FX", ("EURUSD", "FOREX_MARKET", "FOREX", "EUR", "USD")),
        ("EURUSD=X", "FOREX_MARKET", ("EURUSD", "FOREX_MARKET", "FOREX", "EUR", "USD")),
        ("XAUUSD", "FOREX_MARKET", ("XAUUSD", "FOREX_MARKET", "COMMODITY", "XAU", "USD")),
    ],
)
def test_infers_known_market_shapes(ticker, market, expected):
    inf = infer_symbol(ticker, market)
    assert (inf.ticker, inf.market, inf.asset_class, inf.base_currency, inf.quote_currency) == expected
    assert inf.resolved
    assert inf.confidence >= 0.85


@pytest.mark.parametrize(
    ("ticker", "market", "expected_market", "expected_class"),
    [
        ("THYAO.IS", "", "BIST", "STOCK_BIST"),
        ("GARAN.IS", "YAHOO", "BIST", "STOCK_BIST"),
        ("SOLUSDT", None, "BINANCE", "CRYPTO"),
        ("GBPJPY", "UNKNOWN", "FOREX_MARKET", "FOREX"),
    ],
)
def test_unknown_market_falls_back_to_ticker_shape(ticker, market, expected_market, expected_class):
    inf = infer_symbol(ticker, market)
    assert (inf.market, inf.asset_class) == (expected_market, expected_class)
    assert 0 < inf.confidence < 0.85 or ticker.endswith(".IS")


def test_unknown_market_and_plain_ticker_is_not_resolved():
    inf = infer_symbol("AAPL", "LSE")
    assert not inf.resolved
    assert inf.confidence == 0.0
    assert "LSE" in inf.reason


def test_operator_added_market_uses_its_default_class():
    inf = infer_symbol("VOD", "lse", other_markets={"LSE": ("STOCK", "GBP")})
    assert (inf.market, inf.asset_class, inf.quote_currency) == ("LSE", "STOCK", "GBP")
    assert inf.confidence == 0.7


def test_etf_known_to_reference_data_wins_over_market_default():
    assert infer_symbol("ABCD", "NASDAQ", known_etfs={"ABCD"}).asset_class == "ETF"
    assert infer_symbol("ABCD", "NASDAQ").asset_class == "STOCK_NASDAQ"


def test_odd_ticker_on_known_market_has_low_confidence():
    inf = infer_symbol("12345678", "BIST")
    assert inf.asset_class == "STOCK_BIST"
    assert inf.confidence == 0.6
    assert infer_symbol("BTC", "BINANCE").confidence == 0.6


def test_empty_ticker_is_not_resolved():
    assert not infer_symbol("   ", "BIST").resolved


def test_helpers():
    assert normalize_ticker("  th yao\t") == "THYAO"
    assert canonical_market(" xist ") == "BIST"
    assert canonical_market("NOPE") is None
    assert split_crypto_pair("BTC-USD") == ("BTC", "USD")
    assert split_crypto_pair("USDT") is None
    assert split_fx_pair("USDUSD") is None
    assert split_fx_pair("ABCUSD") is None
