"""Plotly figures (JSON) for the admin's chart page: candles with feature overlays,
volume and RSI; daily completeness and quality."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from plotly.subplots import make_subplots

from enrichment.candles.models import DataQualityMetric
from enrichment.candles.selectors import feature_rows
from etl.models import Symbol

# Feature overlays on the candles: name -> line dash (None: solid).
OVERLAYS = {
    "sma_20": None,
    "sma_50": None,
    "ema_20": "dot",
    "vwap_20": "dash",
    "bb_upper_20": "dot",
    "bb_lower_20": "dot",
}
MARGIN = {"l": 40, "r": 10, "t": 30, "b": 30}
# Features no free source feeds: they stay NULL, and the chart page says why.
UNSOURCED = {
    "liquidation_intensity": _("liquidations: Binance publishes no liquidation history over REST (only a live stream)"),
    "exchange_inflow": _("exchange inflow: on-chain flows need a paid data source; none is configured"),
}


def chart_figures(*, symbol: Symbol, timeframe: str, bars: int = 500) -> dict[str, Any]:
    """The candle figure and the daily quality figure of one series, as JSON for the template."""
    rows = feature_rows(symbol=symbol, timeframe=timeframe, start=None, end=None, limit=bars)
    days = list(
        DataQualityMetric.objects.filter(symbol=symbol, timeframe=timeframe)
        .order_by("-day")[:180]
        .values("day", "completeness", "avg_quality_score", "gaps", "volume_anomalies", "ohlc_inconsistencies")
    )
    days.reverse()
    title = gettext("%(symbol)s %(timeframe)s: last %(bars)s bars") % {
        "symbol": f"{symbol.ticker}@{symbol.market.code}",
        "timeframe": timeframe,
        "bars": len(rows),
    }
    return {
        "candles": _candle_figure(rows, title).to_json(),
        "quality": _quality_figure(days).to_json(),
        "bars": len(rows),
        "days": days,
        "unsourced": list(UNSOURCED.items()),
    }


def _candle_figure(rows: list[dict[str, Any]], title: str) -> go.Figure:
    ts = [r["ts"] for r in rows]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=[0.6, 0.2, 0.2], vertical_spacing=0.03)
    candles = go.Candlestick(
        x=ts,
        open=[r["open"] for r in rows],
        high=[r["high"] for r in rows],
        low=[r["low"] for r in rows],
        close=[r["close"] for r in rows],
        name=gettext("candles"),
    )
    fig.add_trace(candles, row=1, col=1)
    for name, dash in OVERLAYS.items():
        line = go.Scatter(x=ts, y=[r[name] for r in rows], name=name, mode="lines", line={"width": 1, "dash": dash})
        fig.add_trace(line, row=1, col=1)
    flagged = [r for r in rows if r["quality_flags"]]
    markers = go.Scatter(
        x=[r["ts"] for r in flagged],
        y=[r["high"] for r in flagged],
        mode="markers",
        name=gettext("quality flags"),
        marker={"symbol": "x", "size": 8, "color": "red"},
        text=[", ".join(r["quality_flags"]) for r in flagged],
    )
    fig.add_trace(markers, row=1, col=1)
    fig.add_trace(go.Bar(x=ts, y=[r["volume"] for r in rows], name=gettext("volume")), row=2, col=1)
    fig.add_trace(go.Scatter(x=ts, y=[r["rsi_14"] for r in rows], name="rsi_14", mode="lines"), row=3, col=1)
    fig.update_layout(height=700, xaxis_rangeslider_visible=False, margin=MARGIN, title=title)
    return fig


def _quality_figure(days: list[dict[str, Any]]) -> go.Figure:
    quality = go.Figure()
    x = [d["day"] for d in days]
    quality.add_trace(go.Bar(x=x, y=[d["completeness"] for d in days], name=gettext("completeness")))
    score = [d["avg_quality_score"] for d in days]
    quality.add_trace(go.Scatter(x=x, y=score, name=gettext("avg quality score"), mode="lines+markers"))
    quality.update_layout(
        height=320,
        yaxis={"range": [0, 1.05]},
        margin=MARGIN,
        title=gettext("Daily completeness (against the market's sessions) and quality score"),
    )
    return quality
