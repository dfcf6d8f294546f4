// The usage page's chart (requests and cost by hour or day) from the page's JSON data block; numbers as everywhere
// (window.num and window.usd, static/js/app.js).
document.addEventListener("DOMContentLoaded", function () {
  const source = document.getElementById("chart-data");
  if (!source || !window.Chart) return;
  const data = JSON.parse(source.textContent);
  new Chart(document.getElementById("usage-chart"), {
    data: { labels: data.labels, datasets: [
      { type: "bar", label: "Requests", data: data.requests, backgroundColor: "#91a7ff", yAxisID: "y", order: 1 },
      { type: "line", label: "Cost (USD)", data: data.cost, borderColor: "#e8590c", backgroundColor: "#e8590c", pointRadius: 3, yAxisID: "y1", tension: .25, order: 0 } ] },
    options: { responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { tooltip: { callbacks: { label: c => c.dataset.label + ": " +
        (c.dataset.yAxisID === "y1" ? window.usd(c.parsed.y) : window.num(c.parsed.y)) } } },
      scales: { y: { beginAtZero: true, position: "left", ticks: { precision: 0, callback: v => window.num(v) } },
        y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false },
              ticks: { callback: v => window.usd(v) } } } }
  });
});
