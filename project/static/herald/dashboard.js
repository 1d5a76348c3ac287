/* Draws the dashboard's trends (project/admin/trends.py) with the vendored Chart.js.
   The numbers are in the page already (each chart's <details> table); this only adds
   the pictures. No inline script: the data comes from the JSON script tag. */
(function () {
  "use strict";
  var COLOURS = ["#417690", "#e07b39", "#5aa469", "#c94c4c", "#8e6bb8", "#d4a72c",
                 "#3d9fb8", "#9c6b4e", "#7f7f7f"];
  var NAMED = { failed: "#c94c4c", succeeded: "#5aa469", retrying: "#d4a72c",
                "items rejected": "#c94c4c" };

  function draw() {
    var source = document.getElementById("herald-trends-data");
    if (!source || typeof window.Chart === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    data.charts.forEach(function (chart) {
      var canvas = document.getElementById("chart-" + chart.key);
      if (!canvas) { return; }
      var datasets = chart.series.map(function (series, i) {
        var colour = NAMED[series.label] || COLOURS[i % COLOURS.length];
        return { label: series.label, data: series.values, backgroundColor: colour,
                 borderColor: colour, borderWidth: 1 };
      });
      new window.Chart(canvas, {
        type: "bar",
        data: { labels: data.labels, datasets: datasets },
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
          scales: {
            x: { stacked: chart.stacked, ticks: { autoSkip: true, maxRotation: 0 } },
            y: { stacked: chart.stacked, beginAtZero: true, ticks: { precision: 0 } }
          }
        }
      });
      canvas.setAttribute("data-drawn", "true");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
