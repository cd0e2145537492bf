/* History of one series: draws the chart with uPlot and switches ranges without a reload.
 *
 * The page is complete without this script (latest value, status, summary, alert
 * periods, range links). Here: the first chart comes from the JSON embedded in the page;
 * a range link fetches <json-url>?range=<key> and redraws. Only numbers and text nodes
 * reach the DOM, never markup built from data.
 */
(function () {
  "use strict";

  var page = document.getElementById("history-page");
  var embedded = document.getElementById("history-data");
  var box = document.getElementById("chart");
  if (!page || !embedded || !box || typeof uPlot === "undefined") return;

  var COLOURS = { avg: "#417690", band: "rgba(65, 118, 144, 0.25)", warning: "#b26a00", critical: "#b00020", alert: "rgba(176, 0, 32, 0.12)", warnAlert: "rgba(178, 106, 0, 0.12)" };
  var SOURCES = { 0: "raw samples", 60: "1-minute rollups", 3600: "1-hour rollups" };
  var plot = null;
  var current = JSON.parse(embedded.textContent);

  function fmt(value) {
    if (value === null || value === undefined || !isFinite(value)) return "—";
    return String(Math.round(value * 1000) / 1000);
  }

  function yRange(data) {
    return function (u, lo, hi) {
      var t = data.threshold;
      var values = [lo, hi];
      if (t) {
        if (t.warning !== null) values.push(t.warning);
        if (t.critical !== null) values.push(t.critical);
      }
      values = values.filter(function (v) { return v !== null && isFinite(v); });
      if (!values.length) return [0, 1];
      var min = Math.min.apply(null, values);
      var max = Math.max.apply(null, values);
      var pad = (max - min) * 0.08 || Math.abs(max) * 0.1 || 1;
      return [min - pad, max + pad];
    };
  }

  function drawAlerts(data) {
    return function (u) {
      var ctx = u.ctx;
      var top = u.bbox.top;
      var height = u.bbox.height;
      ctx.save();
      data.alerts.forEach(function (alert) {
        var start = Math.max(alert.start, data.start);
        var end = alert.end === null ? data.end : Math.min(alert.end, data.end);
        var x0 = u.valToPos(start, "x", true);
        var x1 = u.valToPos(end, "x", true);
        ctx.fillStyle = alert.severity === "warning" || alert.severity === "info" ? COLOURS.warnAlert : COLOURS.alert;
        ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
      });
      ctx.restore();
    };
  }

  function drawThresholds(data) {
    return function (u) {
      var t = data.threshold;
      if (!t) return;
      var ctx = u.ctx;
      ctx.save();
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 1.5 * (window.devicePixelRatio || 1);
      [["warning", COLOURS.warning], ["critical", COLOURS.critical]].forEach(function (pair) {
        var level = t[pair[0]];
        if (level === null || level === undefined) return;
        var y = u.valToPos(level, "y", true);
        ctx.strokeStyle = pair[1];
        ctx.beginPath();
        ctx.moveTo(u.bbox.left, y);
        ctx.lineTo(u.bbox.left + u.bbox.width, y);
        ctx.stroke();
      });
      ctx.restore();
    };
  }

  function draw(data) {
    if (plot) plot.destroy();
    var p = data.points;
    var opts = {
      width: Math.max(320, box.clientWidth || page.clientWidth || 800),
      height: 320,
      scales: { x: { time: true, range: [data.start, data.end] }, y: { range: yRange(data) } },
      series: [
        {},
        { label: "min", stroke: COLOURS.band, width: 1, value: function (u, v) { return fmt(v); } },
        { label: "avg", stroke: COLOURS.avg, width: 2, value: function (u, v) { return fmt(v); } },
        { label: "max", stroke: COLOURS.band, width: 1, value: function (u, v) { return fmt(v); } },
      ],
      bands: [{ series: [3, 1], fill: COLOURS.band }],
      hooks: { drawClear: [drawAlerts(data)], draw: [drawThresholds(data)] },
    };
    plot = new uPlot(opts, [p.t, p.min, p.avg, p.max], box);
    box.dataset.state = "ready";
    box.dataset.range = data.range;
    box.dataset.points = String(p.t.length);
  }

  function setText(id, text) {
    var node = document.getElementById(id);
    if (node) node.textContent = text;
  }

  function summarise(data) {
    var p = data.points;
    var n = p.t.length;
    var avg = n ? p.avg.reduce(function (a, b) { return a + b; }, 0) / n : null;
    var cells = {
      "stat-min": n ? Math.min.apply(null, p.min) : null,
      "stat-avg": avg,
      "stat-max": n ? Math.max.apply(null, p.max) : null,
    };
    Object.keys(cells).forEach(function (cls) {
      var cell = page.querySelector("." + cls);
      if (cell) cell.textContent = fmt(cells[cls]);
    });
    var count = page.querySelector("#summary td:last-child");
    if (count) count.textContent = String(n);
    var caption = page.querySelector("#summary caption");
    if (caption) caption.textContent = "Over the last " + data.range;
    var figcaption = document.getElementById("chart-caption");
    if (figcaption && figcaption.firstChild) {
      figcaption.firstChild.textContent = n + " point" + (n === 1 ? "" : "s") + " over the last " + data.range + " from " + (SOURCES[data.resolution] || "rollups") + ". ";
    }
    renderAlerts(data.alerts);
    setText("series-status", data.series.status);
    setText("latest-value", fmt(data.series.last_value));
  }

  function renderAlerts(alerts) {
    var body = document.querySelector("#alert-periods tbody");
    if (!body) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    if (!alerts.length) {
      var empty = body.insertRow();
      empty.className = "empty";
      var cell = empty.insertCell();
      cell.colSpan = 5;
      cell.className = "muted";
      cell.textContent = "No alert about this series in this range.";
      return;
    }
    alerts.forEach(function (alert) {
      var row = body.insertRow();
      row.className = "alert-period sev-" + alert.severity;
      var when = function (seconds) { return seconds === null ? "ongoing" : new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " "); };
      [alert.name, alert.severity, alert.state, when(alert.start), when(alert.end)].forEach(function (text) {
        row.insertCell().textContent = text;
      });
    });
  }

  function markCurrent(key) {
    page.querySelectorAll(".ranges a").forEach(function (link) {
      var on = link.dataset.range === key;
      link.classList.toggle("current", on);
      if (on) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
    });
  }

  function load(key) {
    box.dataset.state = "loading";
    var url = page.dataset.jsonUrl + "?range=" + encodeURIComponent(key);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        current = data;
        draw(data);
        summarise(data);
        markCurrent(key);
        history.replaceState(null, "", "?range=" + encodeURIComponent(key));
      })
      .catch(function () {
        // Fall back to the plain link: the server renders the range itself.
        window.location.search = "?range=" + encodeURIComponent(key);
      });
  }

  page.querySelectorAll(".ranges a").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      load(link.dataset.range);
    });
  });

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      if (plot) plot.setSize({ width: Math.max(320, box.clientWidth), height: 320 });
    }, 150);
  });

  draw(current);
})();
