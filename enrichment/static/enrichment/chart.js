// Draws the figures the chart page embeds as JSON (json_script), with the
// plotly.js the `plotly` package installs. A file, not inline: the CSP allows
// only our own scripts.
"use strict";
for (const [div, data] of [["candles-chart", "candles-figure"], ["quality-chart", "quality-figure"]]) {
  const source = document.getElementById(data);
  if (!source || !document.getElementById(div)) continue;
  const fig = JSON.parse(JSON.parse(source.textContent));
  Plotly.newPlot(div, fig.data, fig.layout, {responsive: true});
}
