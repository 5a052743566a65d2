// The dashboard's charts (Apache ECharts, vendored): one instance per element id, kept in
// S.charts so that a refresh updates it (setOption) instead of drawing a new one.
/* global echarts */
import {t, tr} from "./i18n.js";
import {S, num, pct, when} from "./core.js";

export const STATE_COLORS = {Executing: "#1a7f37", NotExecuting: "#bf8700", OutOfService: "#cf222e",
  NotAvailable: "#6e7781", Processing: "#2f81f7", Setup: "#a371f7", Maintenance: "#e16f24", None: "#8c959f",
  Automatic: "#1a7f37", MDI: "#2f81f7", Manual: "#bf8700", unknown: "#d0d7de", gap: "#ffffff"};

export function chartIn(id) {
  const el = document.getElementById(id);
  if (!el || typeof echarts === "undefined") return null;
  let c = S.charts[id];
  if (!c || c.isDisposed() || c.getDom() !== el) { c = echarts.init(el, null, {renderer: "canvas"}); S.charts[id] = c; }
  return c;
}
export function disposeCharts() {
  for (const c of Object.values(S.charts)) if (!c.isDisposed()) c.dispose();
  S.charts = {}; S.chart = null;
}
window.addEventListener("resize", () => { for (const c of Object.values(S.charts)) if (!c.isDisposed()) c.resize(); });

const BASE = {animation: false, textStyle: {fontFamily: "system-ui, sans-serif"}};
const legend = {top: 0, type: "scroll"};
// a bucket's label on the category axis: hour, day or shift, in the plant's zone
export function bucketLabel(b, bucket) {
  if (bucket === "1d") return when(b.from, {month: "short", day: "numeric", weekday: "short"});
  if (bucket === "shift") return `${tr("shifts", b.shift)} ${when(b.from, {month: "numeric", day: "numeric"})}`;
  return when(b.from, {hour: "2-digit", minute: "2-digit"});
}
const r1 = v => v == null ? null : Math.round(v * 1000) / 10;  // a fraction as a percentage, 0.1 % steps

// OEE per bucket (bars) with availability, performance and quality (lines), from /kpis/series
export function oeeChart(id, series) {
  const c = chartIn(id); if (!c || !series) return c;
  const b = series.buckets;
  c.setOption({...BASE, legend, grid: {left: 48, right: 16, top: 32, bottom: 40},
    tooltip: {trigger: "axis", valueFormatter: v => pct(v == null ? null : v / 100)},
    xAxis: {type: "category", data: b.map(x => bucketLabel(x, series.bucket))},
    yAxis: {type: "value", min: 0, axisLabel: {formatter: v => pct(v / 100, 0)}},
    series: [
      {name: t("oee"), type: "bar", itemStyle: {color: "#2f81f7"}, data: b.map(x => r1(x.oee))},
      {name: t("availability"), type: "line", symbolSize: 4, data: b.map(x => r1(x.availability))},
      {name: t("effectiveness"), type: "line", symbolSize: 4, data: b.map(x => r1(x.effectiveness))},
      {name: t("quality"), type: "line", symbolSize: 4, data: b.map(x => r1(x.quality_ratio))},
    ]}, true);
  return c;
}

// OEE losses of a KPI entry's time elements (docs/kpis.md): availability losses by cause,
// performance loss (APT - ideal time of the parts made), quality loss (ideal time of the
// scrap); in hours, and in parts at the mean ideal cycle time (ideal_s / pq_plan)
export function lossBreakdown(e) {
  if (!e) return [];
  const pru = e.pq_plan > 0 && e.ideal_s > 0 ? e.ideal_s / e.pq_plan : null;
  const rows = [["setup", e.asut_s], ["malfunction", e.adet_s - e.idle_s], ["minorStops", e.idle_s],
    ["maintenance", e.maintenance_s], ["notAvailable", e.not_available_s], ["other", e.other_s],
    ["performance", pru == null ? null : e.apt_pru_s - e.ideal_s], ["quality", pru == null ? null : pru * e.sq_plan]];
  return rows.map(([key, s]) => ({key, hours: s == null ? null : s / 3600,
    parts: key === "quality" ? e.sq_plan : pru == null || s == null ? null : s / pru}));
}
export function lossChart(id, elements) {
  const c = chartIn(id); if (!c) return c;
  const rows = lossBreakdown(elements);
  const h2 = v => v == null ? null : Math.round(v * 100) / 100;
  c.setOption({...BASE, legend, grid: {left: 8, right: 24, top: 32, bottom: 24, containLabel: true},
    tooltip: {trigger: "axis", axisPointer: {type: "shadow"}, valueFormatter: v => num(v, 1)},
    yAxis: {type: "category", inverse: true, data: rows.map(r => tr("lossNames", r.key))},
    xAxis: [{type: "value", position: "bottom"}, {type: "value", position: "top", show: false}],
    series: [
      {name: t("lossHours"), type: "bar", xAxisIndex: 0, itemStyle: {color: "#cf222e"}, data: rows.map(r => h2(r.hours)),
       label: {show: true, position: "right", formatter: p => num(p.value, 1)}},
      {name: t("lossParts"), type: "bar", xAxisIndex: 1, itemStyle: {color: "#bf8700"},
       data: rows.map(r => r.parts == null ? null : Math.round(r.parts)),
       label: {show: true, position: "right", formatter: p => num(p.value, 0)}},
    ]}, true);
  return c;
}

// good and scrap parts (stacked bars) and energy (line) per bucket, from /kpis/series
export function countersChart(id, series) {
  const c = chartIn(id); if (!c || !series) return c;
  const b = series.buckets, el = x => x.elements || {};
  const r = v => v == null ? null : Math.round(v * 10) / 10;
  c.setOption({...BASE, legend, grid: {left: 8, right: 8, top: 32, bottom: 24, containLabel: true},
    tooltip: {trigger: "axis", valueFormatter: v => num(v, 1)},
    xAxis: {type: "category", data: b.map(x => bucketLabel(x, series.bucket))},
    yAxis: [{type: "value"}, {type: "value", splitLine: {show: false}}],
    series: [
      {name: t("good"), type: "bar", stack: "parts", itemStyle: {color: "#1a7f37"}, data: b.map(x => r(el(x).gq))},
      {name: t("scrap"), type: "bar", stack: "parts", itemStyle: {color: "#cf222e"}, data: b.map(x => r(el(x).sq))},
      {name: t("energy"), type: "line", yAxisIndex: 1, symbolSize: 4, itemStyle: {color: "#e16f24"},
       data: b.map(x => r(el(x).energy_kwh))},
    ]}, true);
  return c;
}

// baseline -> current change of each figure with its 95 % interval (error bars), /kpis/deltas
export function deltasChart(id, deltas) {
  const c = chartIn(id); if (!c || !deltas) return c;
  const rows = Object.entries(deltas.deltas).filter(([, d]) => d.point != null);
  c.setOption({...BASE, grid: {left: 8, right: 24, top: 16, bottom: 24, containLabel: true},
    tooltip: {trigger: "item", formatter: p => {
      const [f, d] = rows[p.dataIndex];
      return `${tr("figures", f)}<br>${t("baseline")}: ${num(d.baseline_value, 3)}<br>${t("current")}: ${num(d.current_value, 3)}`
        + `<br>${t("change")}: ${pct(d.point)} [${pct(d.low)}, ${pct(d.high)}]`; }},
    yAxis: {type: "category", inverse: true, data: rows.map(([f]) => tr("figures", f))},
    xAxis: {type: "value", axisLabel: {formatter: v => pct(v / 100, 0)}},
    series: [
      {name: t("change"), type: "bar", itemStyle: {color: "#2f81f7"}, data: rows.map(([, d]) => r1(d.point))},
      {name: t("interval"), type: "custom", data: rows.map(([, d], i) => [i, r1(d.low), r1(d.high)]),
       renderItem: (params, api) => {
         const lo = api.coord([api.value(1), api.value(0)]), hi = api.coord([api.value(2), api.value(0)]);
         const h = api.size([0, 1])[1] * 0.3, st = {stroke: "#1b1f24", lineWidth: 1.5};
         return {type: "group", children: [
           {type: "line", shape: {x1: lo[0], y1: lo[1], x2: hi[0], y2: hi[1]}, style: st},
           {type: "line", shape: {x1: lo[0], y1: lo[1] - h / 2, x2: lo[0], y2: lo[1] + h / 2}, style: st},
           {type: "line", shape: {x1: hi[0], y1: hi[1] - h / 2, x2: hi[0], y2: hi[1] + h / 2}, style: st}]};
       }, encode: {x: [1, 2], y: 0}, z: 3},
    ]}, true);
  return c;
}

// state timeline (Gantt): rows of [start, end, name] segments; data items [row, start ms, end ms, name]
export function ganttChart(id, rows, span) {
  const c = chartIn(id); if (!c) return c;
  const data = [];
  rows.forEach((r, i) => { for (const [s, e, name] of r.segments) data.push([i, s, e, name ?? "unknown"]); });
  c.getDom().style.height = `${Math.max(120, 40 + rows.length * 34)}px`;
  c.resize();
  c.setOption({...BASE, grid: {left: 8, right: 16, top: 8, bottom: 28, containLabel: true},
    tooltip: {formatter: p => `${rows[p.value[0]].label}<br>${esc2(rows[p.value[0]].names(p.value[3]))}<br>`
      + `${when(p.value[1], {dateStyle: "short", timeStyle: "medium"})} → ${when(p.value[2], {timeStyle: "medium"})}`},
    xAxis: {type: "time", min: span[0], max: span[1],
            axisLabel: {hideOverlap: true, formatter: v => when(v, span[1] - span[0] > 2 * 86400e3
              ? {month: "numeric", day: "numeric"} : {hour: "2-digit", minute: "2-digit"})}},
    yAxis: {type: "category", inverse: true, data: rows.map(r => r.label), axisTick: {show: false}},
    series: [{type: "custom", name: t("timeline"), encode: {x: [1, 2], y: 0}, data,
      renderItem: (params, api) => {
        const a = api.coord([api.value(1), api.value(0)]), b = api.coord([api.value(2), api.value(0)]);
        const h = api.size([0, 1])[1] * 0.6;
        const shape = echarts.graphic.clipRectByRect({x: a[0], y: a[1] - h / 2, width: Math.max(1, b[0] - a[0]), height: h},
          {x: params.coordSys.x, y: params.coordSys.y, width: params.coordSys.width, height: params.coordSys.height});
        return shape && {type: "rect", shape, style: {fill: STATE_COLORS[api.value(3)] || "#57606a"}};
      }}]}, true);
  return c;
}
const esc2 = s => String(s).replace(/[&<>]/g, ch => ({"&": "&amp;", "<": "&lt;", ">": "&gt;"}[ch]));
// samples (ts, name, quality lists of /tags/{path}/samples) as segments: each holds until the
// next sample, the last until the end of the window (or now); a bad sample's time is unknown
export function segments(samples, span) {
  const out = [], end = Math.min(span[1], Date.now());
  for (let i = 0; i < samples.ts.length; i++) {
    const s = Math.max(span[0], Date.parse(samples.ts[i]));
    const e = i + 1 < samples.ts.length ? Date.parse(samples.ts[i + 1]) : end;
    if (e <= s) continue;
    out.push([s, e, samples.quality[i] >= 2 ? null : samples.name?.[i] ?? null]);
  }
  return out;
}

// a tag's history per bucket (/tags/{path}/history)
export function historyChart(id, hist, label) {
  const c = chartIn(id); if (!c || !hist) return c;
  c.setOption({...BASE, grid: {left: 8, right: 16, top: 24, bottom: 24, containLabel: true},
    tooltip: {trigger: "axis", valueFormatter: v => num(v, 3)},
    xAxis: {type: "category", data: hist.buckets.map(b => when(b.from, {month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit"}))},
    yAxis: {type: "value", scale: true},
    series: [{name: label, type: "line", symbolSize: 3, connectNulls: false, itemStyle: {color: "#2f81f7"},
              data: hist.buckets.map(b => typeof b.value === "number" ? b.value : null)}]}, true);
  return c;
}

// ---------------------------------------------------------------- losses by reason (issue 19)
// a reason's or loss type's label: the loss types and `unassigned` are translated, a reason of
// the configuration's reason tree is shown by the name the configuration gives it (the API's
// `label`/`reason_label`)
export function reasonLabel(key, label, kind) {
  if (kind === "loss_type") return tr("lossTypes", key);
  if (key === "unassigned") return tr("reasonNames", key);
  return label ?? key;
}
// one colour per reason, the same in a view's Pareto and its stop timeline: in the order of the
// Pareto (largest loss first), then any other reason of the stops; unassigned grey
const PALETTE = ["#cf222e", "#2f81f7", "#bf8700", "#8250df", "#1a7f37", "#e16f24", "#0a7ea4", "#bf3989",
  "#6639ba", "#9a6700", "#116329", "#57606a", "#fb8f44", "#4ac26b", "#54aeff", "#ff8182"];
const FIXED_COLORS = {unassigned: "#8c959f", speed_loss: "#d4a72c", scrap_rework: "#6e7781"};
export function reasonColors(losses, stops) {
  const keys = [...(losses?.pareto || []).filter(p => p.kind === "reason").map(p => p.key),
    ...[...new Set((stops?.stops || []).map(s => s.reason))].sort()];
  const out = {...FIXED_COLORS};
  let i = 0;
  for (const k of keys) if (!(k in out)) out[k] = PALETTE[i++ % PALETTE.length];
  return out;
}
const h2 = v => v == null ? null : Math.round(v * 100) / 100;  // hours, 0.01 h steps

// Pareto of the losses (/api/v1/losses `pareto`): hours lost per reason, speed loss and scrap,
// largest first (bars), and their cumulative share (line, right axis, percent)
export function paretoChart(id, losses, colors) {
  const c = chartIn(id); if (!c || !losses) return c;
  const p = losses.pareto;
  c.setOption({...BASE, legend, grid: {left: 8, right: 8, top: 32, bottom: 8, containLabel: true},
    tooltip: {trigger: "axis", axisPointer: {type: "shadow"}},
    xAxis: {type: "category", data: p.map(x => reasonLabel(x.key, x.label, x.kind)),
            axisLabel: {interval: 0, rotate: 40, width: 90, overflow: "truncate", fontSize: 11}},
    yAxis: [{type: "value"},
            {type: "value", min: 0, max: 100, splitLine: {show: false}, axisLabel: {formatter: v => pct(v / 100, 0)}}],
    series: [
      {name: t("hoursLost"), type: "bar", itemStyle: {color: "#57606a"}, tooltip: {valueFormatter: v => num(v, 2)},
       data: p.map(x => ({value: h2(x.hours), itemStyle: {color: colors?.[x.key] || "#57606a"}}))},
      {name: t("cumShare"), type: "line", yAxisIndex: 1, symbolSize: 5, itemStyle: {color: "#1b1f24"},
       tooltip: {valueFormatter: v => pct(v == null ? null : v / 100)}, data: p.map(x => r1(x.cumulative_share))},
    ]}, true);
  return c;
}

// stop timeline coloured by reason: a row per machine, a bar per stop of /api/v1/stops; data
// items [row, start ms, end ms, reason id, stop index]
export function stopsChart(id, rows, stops, span, colors) {
  const c = chartIn(id); if (!c || !stops) return c;
  const row = new Map(rows.map((r, i) => [r.asset, i])), list = stops.stops;
  const data = list.flatMap((s, k) => row.has(s.asset)
    ? [[row.get(s.asset), Math.max(span[0], Date.parse(s.start)), Math.min(span[1], Date.parse(s.end)), s.reason, k]] : []);
  c.getDom().style.height = `${Math.max(120, 40 + rows.length * 34)}px`;
  c.resize();
  c.setOption({...BASE, grid: {left: 8, right: 16, top: 8, bottom: 28, containLabel: true},
    tooltip: {formatter: p => { const s = list[p.value[4]];
      return `${esc2(rows[p.value[0]].label)}<br><b>${esc2(reasonLabel(s.reason, s.reason_label))}</b>`
        + ` (${esc2(tr("lossTypes", s.loss_type))}${s.reason_source ? ", " + esc2(tr("reasonSources", s.reason_source)) : ""})<br>`
        + `${when(s.start, {dateStyle: "short", timeStyle: "medium"})} → ${when(s.end, {timeStyle: "medium"})}`
        + ` · ${esc2(t("minutes", {m: num(s.duration_s / 60, 1)}))}`; }},
    xAxis: {type: "time", min: span[0], max: span[1],
            axisLabel: {hideOverlap: true, formatter: v => when(v, span[1] - span[0] > 2 * 86400e3
              ? {month: "numeric", day: "numeric"} : {hour: "2-digit", minute: "2-digit"})}},
    yAxis: {type: "category", inverse: true, data: rows.map(r => r.label), axisTick: {show: false},
            splitArea: {show: true, areaStyle: {color: ["#f6f8fa", "#ffffff"]}}},
    series: [{type: "custom", name: t("stopTimeline"), encode: {x: [1, 2], y: 0}, data,
      renderItem: (params, api) => {
        const a = api.coord([api.value(1), api.value(0)]), b = api.coord([api.value(2), api.value(0)]);
        const h = api.size([0, 1])[1] * 0.6;
        const shape = echarts.graphic.clipRectByRect({x: a[0], y: a[1] - h / 2, width: Math.max(1.5, b[0] - a[0]), height: h},
          {x: params.coordSys.x, y: params.coordSys.y, width: params.coordSys.width, height: params.coordSys.height});
        return shape && {type: "rect", shape, style: {fill: colors?.[api.value(3)] || "#57606a"}};
      }}]}, true);
  return c;
}
// the colours of a stop timeline's reasons, largest loss first (HTML: a reason's name from the
// configuration is data, class raw)
export function reasonLegend(stops, colors) {
  if (!stops) return "";
  if (!stops.stops.length) return `<p>${esc2(t("noStops"))}</p>`;
  const secs = {};
  for (const s of stops.stops) secs[s.reason] = (secs[s.reason] || 0) + s.duration_s;
  const label = Object.fromEntries(stops.stops.map(s => [s.reason, s.reason_label]));
  const items = Object.keys(secs).sort((a, b) => secs[b] - secs[a]).map(k =>
    `<li data-reason="${esc2(k)}"><i style="background:${colors[k] || "#57606a"}"></i>`
    + `<span${k === "unassigned" ? "" : ' class="raw"'}>${esc2(reasonLabel(k, label[k]))}</span> ${esc2(t("hoursN", {h: num(secs[k] / 3600, 2)}))}</li>`).join("");
  const cut = stops.truncated ? `<p class="sub">${esc2(t("stopsCut", {n: stops.stops.length, count: stops.count}))}</p>` : "";
  return `<ul class="legend">${items}</ul>${cut}`;
}
// the six big losses of a /losses answer, in hours and parts
export function lossTypeList(losses) {
  if (!losses) return "";
  return `<ul class="losstypes">${losses.loss_types.map(x => `<li data-loss-type="${x.loss_type}">`
    + `${esc2(tr("lossTypes", x.loss_type))}: <b>${esc2(t("hoursN", {h: num(x.hours, 2)}))}</b>`
    + (x.parts == null ? "" : ` · ${esc2(t("partsN", {n: num(x.parts, 0)}))}`) + `</li>`).join("")}</ul>`;
}
