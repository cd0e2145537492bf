/* OpsPortal status page: keeps the server-rendered page live over /ws/status/.
 *
 * Messages: "snapshot" (every section; re-renders them), then "metrics", "alert",
 * "heartbeat", or "batch" (several of those in one frame). Reconnects with exponential
 * backoff and shows "reconnecting…"; stops on 4401 (logged out) and 4403 (not allowed).
 * Data only ever reaches the page as text (textContent), never as markup.
 */
(function () {
  "use strict";

  var root = document.getElementById("status-page");
  if (!root || !("WebSocket" in window)) return;

  var RANK = { healthy: 0, unknown: 1, stale: 2, warning: 3, critical: 4 };
  var ALERT_LEVEL = { info: "healthy", warning: "warning", critical: "critical", emergency: "critical" };
  var SEVERITY_ORDER = { emergency: 0, critical: 1, warning: 2, info: 3 };
  var SPARK_SECONDS = 3600;
  var SPARK_W = 160, SPARK_H = 32;
  var BACKOFF_MIN = 1000, BACKOFF_MAX = 30000;
  var SVG = "http://www.w3.org/2000/svg";

  var state = { seriesOverall: "unknown", counts: {}, alerts: new Map(), tiles: new Map(), lastAt: null, lastMsg: 0 };
  var conn = document.getElementById("conn");
  var socket = null, attempts = 0, retryTimer = null, finalState = false, resyncAt = 0;

  // --- small helpers -------------------------------------------------------------

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function worst(list) {
    var out = null;
    list.forEach(function (s) { if (out === null || (RANK[s] || 1) > (RANK[out] || 1)) out = s; });
    return out || "unknown";
  }

  function timeText(iso, withDate) {
    if (!iso) return "no data";
    var d = new Date(iso);
    if (isNaN(d)) return "";
    var pad = function (n) { return String(n).padStart(2, "0"); };
    var t = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    return withDate ? d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + t : t;
  }

  function safeHref(url) {
    return typeof url === "string" && (/^https?:\/\//.test(url) || /^\/(?!\/)/.test(url)) ? url : null;
  }

  function setStatusClass(node, prefix, status) {
    Array.from(node.classList).forEach(function (c) { if (c.indexOf(prefix) === 0) node.classList.remove(c); });
    node.classList.add(prefix + status);
  }

  // --- connection state ------------------------------------------------------------

  function showConn(kind, text, link) {
    conn.dataset.state = kind;
    root.dataset.conn = kind;
    var label = conn.querySelector(".conn-text");
    label.textContent = text;
    if (link) {
      label.appendChild(document.createTextNode(" "));
      var a = el("a", null, link.text);
      a.href = link.href;
      label.appendChild(a);
    }
  }

  // --- rendering -------------------------------------------------------------------

  function sparkline(points) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", SPARK_W);
    svg.setAttribute("height", SPARK_H);
    svg.setAttribute("viewBox", "0 0 " + SPARK_W + " " + SPARK_H);
    var vals = points.filter(function (p) { return typeof p[1] === "number"; });
    if (vals.length < 2) return svg;
    var pad = 2, t0 = vals[0][0], t1 = vals[vals.length - 1][0];
    var lo = Math.min.apply(null, vals.map(function (p) { return p[1]; }));
    var hi = Math.max.apply(null, vals.map(function (p) { return p[1]; }));
    var st = (t1 - t0) || 1, sv = (hi - lo) || 1;
    var line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", vals.map(function (p) {
      return (pad + (p[0] - t0) / st * (SPARK_W - 2 * pad)).toFixed(1) + "," + (pad + (hi - p[1]) / sv * (SPARK_H - 2 * pad)).toFixed(1);
    }).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "currentColor");
    line.setAttribute("stroke-width", "1.5");
    svg.appendChild(line);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "last hour: " + lo + " to " + hi);
    return svg;
  }

  function tileNode(tile) {
    var node = el("article", "tile status-" + tile.status);
    node.dataset.seriesId = tile.id;
    node.dataset.metric = tile.name;
    var head = el("header");
    var historyHref = safeHref(tile.history_url);
    var title = el(historyHref ? "a" : "span", "tile-title", tile.title);
    if (historyHref) {
      title.href = historyHref;
      title.title = "History of this series";
    }
    head.appendChild(title);
    head.appendChild(document.createTextNode(" "));
    head.appendChild(el("span", "tile-status", tile.status));
    node.appendChild(head);
    node.appendChild(el("div", "tile-value", tile.display));
    var spark = el("div", "tile-spark");
    spark.appendChild(sparkline(tile.spark || []));
    node.appendChild(spark);
    var foot = el("footer");
    foot.appendChild(el("span", "tile-limits", tile.limits));
    foot.appendChild(document.createTextNode(" "));
    var at = el("time", "tile-at", timeText(tile.at));
    at.setAttribute("datetime", tile.at || "");
    foot.appendChild(at);
    node.appendChild(foot);
    return node;
  }

  function renderTiles(data) {
    var hosts = document.getElementById("hosts");
    state.tiles = new Map();
    hosts.textContent = "";
    if (!data.hosts.length) {
      hosts.appendChild(el("p", "empty muted", "No key series recorded yet: collectors write them every 10 s once the worker and beat run."));
      return;
    }
    data.hosts.forEach(function (group) {
      var box = el("div", "host");
      box.dataset.host = group.host;
      box.appendChild(el("h3", null, group.host));
      var grid = el("div", "tiles");
      group.tiles.forEach(function (tile) {
        var node = tileNode(tile);
        state.tiles.set(tile.id, { tile: tile, node: node });
        grid.appendChild(node);
      });
      box.appendChild(grid);
      hosts.appendChild(box);
    });
  }

  function updateTile(series) {
    var entry = state.tiles.get(series.id);
    if (!entry) return false;
    var tile = entry.tile, node = entry.node;
    tile.status = series.status;
    tile.display = series.display;
    setStatusClass(node, "status-", series.status);
    node.querySelector(".tile-status").textContent = series.status;
    node.querySelector(".tile-value").textContent = series.display;
    var at = node.querySelector(".tile-at");
    at.textContent = timeText(series.at);
    at.setAttribute("datetime", series.at || "");
    if (series.at && typeof series.value === "number") {
      var t = new Date(series.at).getTime() / 1000;
      var spark = tile.spark || (tile.spark = []);
      if (!spark.length || spark[spark.length - 1][0] < t) spark.push([t, series.value]);
      while (spark.length && spark[0][0] < t - SPARK_SECONDS) spark.shift();
      var holder = node.querySelector(".tile-spark");
      holder.textContent = "";
      holder.appendChild(sparkline(spark));
    }
    return true;
  }

  function alertRow(a) {
    var tr = el("tr", "alert severity-" + a.severity + " state-" + a.state);
    tr.dataset.alertId = a.id;
    var sev = el("td");
    sev.appendChild(el("span", "sev sev-" + a.severity, a.severity));
    tr.appendChild(sev);
    var name = el("td");
    var link = el("a", "alert-name", a.name);
    link.href = safeHref(a.url) || "#";
    name.appendChild(link);
    var labels = Object.keys(a.labels || {}).filter(function (k) { return k !== "host"; }).sort()
      .map(function (k) { return k + "=" + a.labels[k]; }).join(", ");
    name.appendChild(el("div", "muted small", labels + (a.summary ? " — " + a.summary : "")));
    tr.appendChild(name);
    tr.appendChild(el("td", "alert-state", a.state));
    var since = el("td");
    var time = el("time", null, timeText(a.active_since, true));
    time.setAttribute("datetime", a.active_since || "");
    since.appendChild(time);
    tr.appendChild(since);
    tr.appendChild(el("td", "alert-value", typeof a.value === "number" ? String(Math.round(a.value * 1000) / 1000) : "—"));
    var rb = el("td");
    var href = safeHref(a.runbook_url);
    if (href) {
      var r = el("a", null, "runbook");
      r.href = href;
      r.rel = "noopener noreferrer";
      rb.appendChild(r);
    } else if (a.runbook) {
      var details = el("details");
      details.appendChild(el("summary", null, "runbook"));
      details.appendChild(document.createTextNode(a.runbook));
      rb.appendChild(details);
    } else {
      rb.appendChild(el("span", "muted", "—"));
    }
    tr.appendChild(rb);
    return tr;
  }

  function renderAlerts() {
    var list = Array.from(state.alerts.values()).sort(function (a, b) {
      return ((SEVERITY_ORDER[a.severity] ?? 9) - (SEVERITY_ORDER[b.severity] ?? 9)) || ((b.active_since || "") > (a.active_since || "") ? 1 : -1);
    });
    var body = document.getElementById("alerts-body");
    body.textContent = "";
    list.forEach(function (a) { body.appendChild(alertRow(a)); });
    document.getElementById("alerts-count").textContent = list.length;
    document.getElementById("alerts-empty").hidden = list.length > 0;
    body.closest("table").hidden = list.length === 0;
  }

  function renderOverall() {
    var levels = [state.seriesOverall];
    state.alerts.forEach(function (a) {
      if (a.state === "firing" || a.state === "acknowledged") levels.push(ALERT_LEVEL[a.severity] || "warning");
    });
    var status = worst(levels);
    var banner = document.getElementById("overall");
    setStatusClass(banner, "status-", status);
    banner.dataset.status = status;
    banner.dataset.seriesStatus = state.seriesOverall;
    banner.querySelector(".banner-status").textContent = status;
  }

  function renderCounts(counts) {
    var box = document.querySelector("#overall .banner-counts");
    box.textContent = "";
    Object.keys(counts).forEach(function (name) {
      if (!counts[name]) return;
      box.appendChild(el("span", "count status-" + name, counts[name] + " " + name));
      box.appendChild(document.createTextNode(" "));
    });
  }

  function touched(at) {
    if (at) state.lastAt = at;
    state.lastMsg = Date.now();
    var node = document.getElementById("updated");
    node.textContent = timeText(state.lastAt);
    node.setAttribute("datetime", state.lastAt || "");
    tickAge();
  }

  function tickAge() {
    var age = document.getElementById("updated-age");
    if (!state.lastAt) { age.textContent = ""; return; }
    var s = Math.max(0, Math.round((Date.now() - new Date(state.lastAt).getTime()) / 1000));
    age.textContent = "(" + (s < 90 ? s + " s" : Math.round(s / 60) + " min") + " ago)";
  }

  // --- messages --------------------------------------------------------------------

  var handlers = {
    snapshot: function (m) {
      var s = m.sections || {};
      if (s.tiles) renderTiles(s.tiles);
      if (s.alerts) {
        state.alerts = new Map();
        s.alerts.alerts.forEach(function (a) { state.alerts.set(a.id, a); });
        renderAlerts();
      }
      if (s.overall) {
        state.seriesOverall = s.overall.series;
        renderCounts(s.overall.counts || {});
      }
      renderOverall();
      attempts = 0;
      showConn("live", "Live");
      touched(m.at);
    },
    metrics: function (m) {
      var unknown = false;
      (m.series || []).forEach(function (s) { if (!updateTile(s)) unknown = true; });
      if (m.overall) state.seriesOverall = m.overall;
      renderOverall();
      touched(m.at);
      // A series the page has no tile for yet: ask for a fresh snapshot (rate-limited).
      if (unknown && Date.now() - resyncAt > 10000) {
        resyncAt = Date.now();
        send({ type: "resync" });
      }
    },
    alert: function (m) {
      (m.alerts || []).forEach(function (a) {
        if (a.state === "resolved" || a.state === "deleted") state.alerts.delete(a.id);
        else state.alerts.set(a.id, a);
      });
      renderAlerts();
      renderOverall();
      touched(m.at);
    },
    heartbeat: function (m) {
      touched(m.at); // the heartbeats section plugs in here when it lands
    },
    batch: function (m) {
      (m.messages || []).forEach(handle);
    },
  };

  function handle(m) {
    var fn = m && handlers[m.type];
    if (fn) fn(m);
  }

  function send(obj) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(obj));
  }

  // --- the socket ------------------------------------------------------------------

  function connect() {
    retryTimer = null;
    if (attempts === 0) showConn("connecting", "Connecting…");
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(proto + location.host + root.dataset.wsPath);
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      handle(message);
    };
    socket.onclose = function (event) {
      socket = null;
      if (event.code === 4401) {
        finalState = true;
        showConn("logged-out", "Logged out: live updates stopped.", { text: "Log in again", href: root.dataset.loginUrl });
        return;
      }
      if (event.code === 4403) {
        finalState = true;
        showConn("forbidden", "Not allowed: this account may not watch the status page.");
        return;
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (finalState || retryTimer) return;
    var delay = Math.min(BACKOFF_MAX, BACKOFF_MIN * Math.pow(2, attempts));
    delay = Math.round(delay * (0.75 + Math.random() * 0.25));
    attempts += 1;
    var until = Date.now() + delay;
    var countdown = function () {
      var left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      showConn("reconnecting", "Reconnecting… (try " + attempts + ", in " + left + " s)");
    };
    countdown();
    retryTimer = setTimeout(connect, delay);
    var tick = setInterval(function () { if (retryTimer) countdown(); else clearInterval(tick); }, 1000);
  }

  // Back from sleep or a hidden tab with a dead socket: try now rather than at the next backoff step.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && !socket && retryTimer && !finalState) {
      clearTimeout(retryTimer);
      connect();
    }
  });

  setInterval(tickAge, 1000);
  connect();
})();
