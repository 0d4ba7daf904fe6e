// Draws every dashboard chart: a <div class="dash-chart" data-figure="ID">
// whose figure (plotly JSON) sits in <script type="application/json" id="ID">.
"use strict";
for (const div of document.querySelectorAll(".dash-chart[data-figure]")) {
  const source = document.getElementById(div.dataset.figure);
  if (!source) continue;
  const fig = JSON.parse(source.textContent);
  Plotly.newPlot(div, fig.data, fig.layout, {responsive: true, displayModeBar: false});
}
