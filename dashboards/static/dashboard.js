// Run page: draws the server-built plotly figures, then keeps them live.
// Every POLL_MS it asks /runs/<id>/data?after=<last step> for new points and extends the
// traces in place (no reload). Zooming one chart fetches detail for that step window for
// every chart (they share the step axis); double-click resets. The report sets live=false
// and is a static snapshot (plotly still zooms, on the points it has).
(function () {
  "use strict";
  var stateEl = document.getElementById("dashboard-state");
  if (!stateEl || !window.Plotly) return;
  var state = JSON.parse(stateEl.textContent);
  var config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
  var charts = {};
  var zoomed = null;   // [lo, hi] while zoomed in
  var syncing = false; // true while we move the axes ourselves
  var busy = false;
  var lastStep = state.last_step;
  var spanKeys = {};

  function byId(id) { return document.getElementById(id); }

  function setText(id, value) {
    var el = byId(id);
    if (el) el.textContent = value === null || value === undefined ? "–" : String(value);
  }

  function setBadge(id, kind, value) {
    var el = byId(id);
    if (!el) return;
    el.textContent = value;
    el.className = "badge " + kind + "-" + value;
  }

  function draw() {
    state.metrics.forEach(function (metric) {
      var div = byId("chart-" + metric);
      var fig = state.figures[metric];
      if (!div || !fig) return;
      Plotly.newPlot(div, fig.data, fig.layout, config);
      charts[metric] = div;
      spanKeys[metric] = JSON.stringify(spanShapes(fig.layout.shapes || []));
      if (state.live) div.on("plotly_relayout", onRelayout);
    });
    var decision = byId("decision-chart");
    if (decision) Plotly.newPlot(decision, state.decision_figure.data, state.decision_figure.layout, config);
  }

  function spanShapes(shapes) {
    return shapes.filter(function (s) { return (s.name || "").indexOf("span:") === 0; });
  }

  function thresholdShapes(shapes) {
    return shapes.filter(function (s) { return (s.name || "").indexOf("span:") !== 0; });
  }

  function dataUrl(params) {
    var query = ["metrics=" + encodeURIComponent(state.metrics.join(",")), "max_points=" + state.max_points];
    Object.keys(params).forEach(function (key) {
      if (params[key] !== null && params[key] !== undefined) query.push(key + "=" + encodeURIComponent(params[key]));
    });
    return "/runs/" + encodeURIComponent(state.run_id) + "/data?" + query.join("&");
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (r.status === 401) {
        window.location.href = "/login?next=" + encodeURIComponent(window.location.pathname);
        throw new Error("signed out");
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  function markers(series) {
    return {
      x: series.nonfinite.map(function (p) { return p.step; }),
      y: series.nonfinite.map(function () { return 0.96; }),
      text: series.nonfinite.map(function (p) { return p.value + " (rank " + p.rank + ", x" + p.count + ")"; })
    };
  }

  function updateStatus(run) {
    setBadge("health", "health", run.health);
    setBadge("decision", "decision", run.decision);
    setText("last-step", run.last_step);
    setText("last-epoch", run.last_epoch);
    setText("record-count", run.record_count);
  }

  function updateFiring(firing) {
    var section = byId("firing");
    var list = byId("firing-list");
    if (!section || !list) return;
    section.hidden = firing.length === 0;
    list.replaceChildren.apply(list, firing.map(function (span) {
      var item = document.createElement("li");
      var badge = document.createElement("span");
      badge.className = "badge severity-" + span.severity;
      badge.textContent = span.severity;
      var rule = document.createElement("strong");
      rule.textContent = span.rule;
      item.append(badge, " ", rule, " on rank " + span.rank + " (" + span.metric + ") since step " + span.start);
      return item;
    }));
  }

  function updateSpans(metric, shapes) {
    var key = JSON.stringify(shapes || []);
    if (key === spanKeys[metric]) return;
    spanKeys[metric] = key;
    var div = charts[metric];
    Plotly.relayout(div, { shapes: thresholdShapes(div.layout.shapes || []).concat(shapes || []) });
  }

  function extend(body) {
    var tooMany = false;
    Object.keys(charts).forEach(function (metric) {
      var series = body.series[metric];
      if (!series) return;
      var div = charts[metric];
      if (series.steps.length) Plotly.extendTraces(div, { x: [series.steps], y: [series.values] }, [0]);
      if (series.nonfinite.length) {
        var m = markers(series);
        Plotly.extendTraces(div, { x: [m.x], y: [m.y], text: [m.text] }, [1]);
      }
      if (div.data[0].x.length > 3 * state.max_points) tooMany = true;
    });
    return tooMany;
  }

  function refetch(lo, hi) {
    getJSON(dataUrl({ step_min: lo, step_max: hi })).then(function (body) {
      syncing = true;
      var pending = Object.keys(charts).map(function (metric) {
        var div = charts[metric];
        var series = body.series[metric];
        var m = markers(series);
        var data = [Object.assign({}, div.data[0], { x: series.steps, y: series.values }),
                    Object.assign({}, div.data[1], { x: m.x, y: m.y, text: m.text })];
        var layout = Object.assign({}, div.layout);
        layout.xaxis = Object.assign({}, div.layout.xaxis, lo === null ? { autorange: true } :
          { range: [lo, hi], autorange: false });
        layout.yaxis = Object.assign({}, div.layout.yaxis, { autorange: true });
        layout.shapes = thresholdShapes(div.layout.shapes || []).concat(body.span_shapes[metric] || []);
        spanKeys[metric] = JSON.stringify(body.span_shapes[metric] || []);
        layout.datarevision = Date.now();
        return Plotly.react(div, data, layout, config);
      });
      return Promise.all(pending);
    }).catch(function (err) { setText("live-status", "error: " + err.message); })
      .then(function () { syncing = false; });
  }

  function onRelayout(event) {
    if (syncing) return;
    if (event["xaxis.autorange"]) {
      zoomed = null;
      refetch(null, null);
      return;
    }
    var lo = event["xaxis.range[0]"];
    var hi = event["xaxis.range[1]"];
    if (lo === undefined && event["xaxis.range"]) { lo = event["xaxis.range"][0]; hi = event["xaxis.range"][1]; }
    if (lo === undefined || hi === undefined) return;
    zoomed = [Math.max(0, Math.floor(lo)), Math.max(0, Math.ceil(hi))];
    refetch(zoomed[0], zoomed[1]);
  }

  function poll() {
    if (busy || document.hidden) return;
    busy = true;
    getJSON(dataUrl({ after: lastStep === null ? -1 : lastStep })).then(function (body) {
      updateStatus(body.run);
      updateFiring(body.firing);
      var tooMany = !zoomed && extend(body);
      Object.keys(charts).forEach(function (metric) { updateSpans(metric, body.span_shapes[metric]); });
      var decision = byId("decision-chart");
      if (decision) Plotly.react(decision, body.decision_figure.data, body.decision_figure.layout, config);
      if (body.run.last_step !== null) lastStep = body.run.last_step;
      setText("live-status", "updated " + new Date().toLocaleTimeString());
      if (tooMany) refetch(null, null);  // re-downsample instead of growing without bound
    }).catch(function (err) { setText("live-status", "error: " + err.message); })
      .then(function () { busy = false; });
  }

  draw();
  if (state.live) {
    setText("live-status", "every " + state.poll_ms / 1000 + " s");
    window.setInterval(poll, state.poll_ms);
  }
})();
