// #/line/<path> and #/machine/<path>: a line's machines or one machine, with the state
// timeline (Gantt) from the raw state and mode samples, OEE and its parts per bucket, the
// losses, output and energy; a machine's tags (each linked to its history and raw samples)
// and the gaps that count against it.
import {t, tr} from "../i18n.js";
import {S, api, assetsOf, bounded, enc, esc, figures, link, lineOf, loadDevices, loadLatest, loadTags, num,
  nameHtml, short, stateName, tile, when, windowMs, windowSpec, wq} from "../core.js";
import {countersChart, ganttChart, lossChart, lossTypeList, oeeChart, paretoChart, reasonColors, reasonLegend,
  segments, stopsChart} from "../charts.js";

const CHARTS = `
  <section class="card wide"><h2 data-i18n="timeline"></h2><div id="gantt" class="chart gantt"></div></section>
  <section class="card wide"><h2 data-i18n="stopTimeline"></h2><div id="stops" class="chart gantt"></div>
    <div id="stops-legend"></div></section>
  <div class="grid2">
    <section class="card"><h2 data-i18n="hourlyOee"></h2><div id="chart" class="chart"></div></section>
    <section class="card"><h2 data-i18n="losses"></h2><div id="loss" class="chart"></div></section>
    <section class="card"><h2 data-i18n="counters"></h2><div id="counters" class="chart"></div></section>
    <section class="card"><h2 data-i18n="pareto"></h2><div id="pareto" class="chart"></div>
      <div id="loss-types"></div></section>
  </div>`;

// a state or mode tag's samples in the window (for the Gantt), from the sample in force at its
// start (the KPI evidence's prior_sample of the tag: a state holds until the next sample)
async function samples(path, w, kpis) {
  const asset = path.split("/").slice(0, -1).join("/");
  const prior = kpis?.assets?.[asset]?.evidence?.tags?.find(x => x.path === path)?.prior_sample;
  const from = prior ? {...w, from: prior} : w;
  return api(`/api/v1/tags/${enc(path)}/samples?${wq(from)}&limit=10000`).catch(e => e.status === 404 ? null : Promise.reject(e));
}
// the selection's losses (Pareto) and stops (timeline by reason), q: asset= or line=
function lossJobs(q, w, N) {
  return [api(`/api/v1/losses?${q}&${wq(w)}`).then(l => { N.losses = l; }),
          api(`/api/v1/stops?${q}&${wq(w)}`).then(s => { N.stops = s; })];
}
function drawLosses(D, rows) {
  const colors = reasonColors(D.losses, D.stops);
  paretoChart("pareto", D.losses, colors);
  document.getElementById("loss-types").innerHTML = lossTypeList(D.losses);
  if (D.stops) stopsChart("stops", rows, D.stops, windowMs(windowSpec(), D.stops.window), colors);
  document.getElementById("stops-legend").innerHTML = reasonLegend(D.stops, colors);
}
function timeline(rows) {
  const w = windowSpec(), span = windowMs(w, S.data.series?.window);
  ganttChart("gantt", rows.filter(r => r.samples).map(r => ({label: r.label, names: n => stateName(n, r.role),
    segments: segments(r.samples, span)})), span);
}

export function lineView(line) {
  return {
    crumbs: () => [[line, link.line(line)]],
    mount(root) {
      root.innerHTML = `<h2><span data-i18n="line"></span> ${esc(line)}</h2><div id="figs"></div>
        <section class="line"><div class="tiles" id="tiles"></div></section>${CHARTS}`;
    },
    async load(slow, D) {  // D: this view's data (a view shown meanwhile has its own)
      const N = {};  // the new answers, into D at once: never a chart beside newer figures
      await loadTags();
      const w = windowSpec(), q = `line=${encodeURIComponent(line)}`;
      const jobs = [loadLatest(`prefix=${encodeURIComponent(line)}`), loadDevices()];
      if (slow) {
        jobs.push(api(`/api/v1/kpis?${q}&${wq(w)}`).then(k => { N.kpis = k; }),
                  api(`/api/v1/kpis/series?${q}&${wq(w)}&bucket=${w.bucket}`).then(s => { N.series = s; S.plantTz = s.timezone; }),
                  ...lossJobs(q, w, N));
      }
      await Promise.all(jobs);
      if (slow) N.states = await bounded(assetsOf(line), 4, a => samples(`${a}/state`, w, N.kpis));
      Object.assign(D, N);
    },
    render() {
      const D = S.data, members = assetsOf(line);
      document.getElementById("figs").innerHTML = figures(D.kpis?.lines?.[line]);
      document.getElementById("tiles").innerHTML = members.map(a => tile(a, D.kpis)).join("");
      if (D.states) timeline(members.map((a, i) => ({label: short(a), role: "state", samples: D.states[i]})));
      S.chart = oeeChart("chart", D.series);
      lossChart("loss", D.kpis?.lines?.[line]?.elements);
      countersChart("counters", D.series);
      drawLosses(D, members.map(a => ({asset: a, label: short(a)})));
    },
  };
}

export function machineView(asset) {
  return {
    crumbs: () => [[lineOf(asset), link.line(lineOf(asset))], [short(asset), link.machine(asset)]],
    mount(root) {
      root.innerHTML = `<h2><span data-i18n="machine"></span> ${esc(short(asset))}</h2>
        <div class="sub">${esc(asset)}</div><div id="figs"></div>
        <section class="line"><div class="tiles" id="tiles"></div></section>${CHARTS}
        <div class="grid2">
          <section class="card"><h2 data-i18n="tags"></h2><div class="scroll"><table id="tags">
            <thead><tr><th data-i18n="tag"></th><th data-i18n="role"></th><th data-i18n="value"></th>
            <th data-i18n="time"></th><th data-i18n="quality_"></th></tr></thead><tbody></tbody></table></div></section>
          <section class="card" id="gaps-card"><h2 data-i18n="gaps"></h2><div id="gaps"></div></section>
        </div>`;
    },
    async load(slow, D) {  // D: this view's data (a view shown meanwhile has its own)
      const N = {};  // the new answers, into D at once: never a chart beside newer figures
      await loadTags();
      const w = windowSpec(), q = `asset=${encodeURIComponent(asset)}`;
      const jobs = [loadLatest(q), loadDevices()];
      if (slow) {
        const roles = ["state", "mode"].filter(r => S.tags.some(x => x.path === `${asset}/${r}`));
        jobs.push(api(`/api/v1/kpis?${q}&${wq(w)}`).then(k => { N.kpis = k; }),
                  api(`/api/v1/kpis/series?${q}&${wq(w)}&bucket=${w.bucket}`).then(s => { N.series = s; S.plantTz = s.timezone; }),
                  ...lossJobs(q, w, N));
        await Promise.all(jobs);
        const x = await bounded(roles, 2, r => samples(`${asset}/${r}`, w, N.kpis));
        N.rows = roles.map((r, i) => ({r, s: x[i]}));
      }
      await Promise.all(jobs);
      Object.assign(D, N);
    },
    render() {
      const D = S.data, k = D.kpis?.assets?.[asset];
      document.getElementById("figs").innerHTML = figures(k);
      document.getElementById("tiles").innerHTML = tile(asset, D.kpis);
      if (D.rows) timeline(D.rows.map(x => ({label: tr("roles", x.r), role: x.r, samples: x.s})));
      S.chart = oeeChart("chart", D.series);
      lossChart("loss", k?.elements);
      countersChart("counters", D.series);
      drawLosses(D, [{asset, label: short(asset)}]);
      const w = windowSpec(), span = D.kpis?.window;
      document.querySelector("#tags tbody").innerHTML = (S.tags || []).filter(x => x.asset === asset).map(x => {
        const l = S.latest[x.path];
        // a unit is the configuration's text, shown as it is (class raw)
        const v = l?.name != null ? nameHtml(l.name, x.role) : l?.text != null ? `<span class="raw">${esc(l.text)}</span>`
          : l?.value != null ? `${num(l.value, 3)} <span class="raw">${esc(x.unit || "")}</span>` : "—";
        return `<tr data-tag="${esc(x.path)}"><td><a href="${link.tag(x.path, span?.from ?? (w.fixed ? w.from : null), span?.to ?? w.to)}">${esc(short(x.path))}</a></td>
          <td>${esc(tr("roles", x.role))}</td><td>${v}</td><td>${when(l?.ts, {timeStyle: "medium"})}</td>
          <td>${esc(tr("qualities", l?.quality ?? "no data"))}</td></tr>`;
      }).join("");
      const gaps = k?.evidence?.gaps;
      document.getElementById("gaps").innerHTML = gaps == null ? "" : !gaps.length ? `<p>${t("noGaps")}</p>`
        : `<div class="scroll"><table><thead><tr><th>${t("device")}</th><th>${t("from")}</th><th>${t("to")}</th>
           <th>${t("reason")}</th></tr></thead><tbody>${gaps.map(g => `<tr><td>${esc(g.device)}</td>
           <td>${when(g.start)}</td><td>${when(g.end)}</td><td class="raw">${esc(g.reason)}</td></tr>`).join("")}</tbody></table></div>`;
    },
  };
}
