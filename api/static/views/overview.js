// #/ — the plant: every machine's live state and mode by line, OEE per line and machine, OEE
// and its parts per bucket, the losses, output and energy, baseline vs current, collectors.
import {t, tr} from "../i18n.js";
import {S, api, assetsOf, esc, link, lineOf, loadDevices, loadLatest, loadTags, pct, tile, when, windowSpec, wq} from "../core.js";
import {countersChart, deltasChart, lossChart, lossTypeList, oeeChart, paretoChart, reasonColors} from "../charts.js";

const DELTAS_PERIOD_MS = 600_000;  // a bootstrap over weeks of days: seconds of the gateway's CPU

export const overview = {
  crumbs: () => [],
  mount(root) {
    root.innerHTML = `
      <h2 data-i18n="overview"></h2><div id="plant"></div>
      <div class="grid2">
        <section class="card"><h2 data-i18n="hourlyOee"></h2><div id="chart" class="chart"></div></section>
        <section class="card"><h2 data-i18n="losses"></h2><div id="loss" class="chart"></div></section>
        <section class="card"><h2 data-i18n="pareto"></h2><div id="pareto" class="chart"></div>
          <div id="loss-types"></div></section>
        <section class="card"><h2 data-i18n="counters"></h2><div id="counters" class="chart"></div></section>
        <section class="card"><h2 data-i18n="deltas"></h2><div id="deltas" class="chart"></div>
          <div class="sub" id="deltas-windows"></div></section>
      </div>
      <h2 data-i18n="collectors"></h2>
      <div class="scroll"><table id="devices">
        <thead><tr><th data-i18n="device"></th><th data-i18n="protocol"></th><th data-i18n="state"></th>
        <th data-i18n="lastSuccess"></th><th data-i18n="lastError"></th></tr></thead><tbody></tbody></table></div>`;
  },
  async load(slow, D) {  // D: this view's data (a view shown meanwhile has its own)
    const N = {};  // the new answers, into D at once: never a chart beside newer figures
    await loadTags();
    const w = windowSpec();
    const jobs = [loadLatest("role=state"), loadLatest("role=mode"), loadDevices()];
    if (slow) jobs.push(api(`/api/v1/kpis?${wq(w)}`).then(k => { N.kpis = k; }),
                        api(`/api/v1/kpis/series?${wq(w)}&bucket=${w.bucket}`).then(s => { N.series = s; S.plantTz = s.timezone; }),
                        api(`/api/v1/losses?${wq(w)}`).then(l => { N.losses = l; }));
    await Promise.all(jobs);
    Object.assign(D, N);
  },
  async heavy(D) {  // baseline vs current: a bootstrap over weeks of days, every 10 minutes
    if (!D.deltasAt || Date.now() - D.deltasAt > DELTAS_PERIOD_MS) {
      D.deltas = await api("/api/v1/kpis/deltas");
      D.deltasAt = Date.now();
    }
  },
  render() {
    const D = S.data, lines = new Map();
    for (const a of assetsOf()) {
      if (!lines.has(lineOf(a))) lines.set(lineOf(a), []);
      lines.get(lineOf(a)).push(a);
    }
    let html = "";
    for (const [line, members] of lines) {
      html += `<section class="line" data-line="${esc(line)}"><h3><a href="${link.line(line)}">${esc(line)}</a>
        <span>${t("oee")} <span class="line-oee">${pct(D.kpis?.lines?.[line]?.oee)}</span></span></h3>
        <div class="tiles">${members.map(a => tile(a, D.kpis)).join("")}</div></section>`;
    }
    document.getElementById("plant").innerHTML = html;
    const last = D.series?.buckets?.at(-1);  // off shift: the current bucket has no planned busy time
    document.getElementById("offshift").hidden = !(last && last.elements && last.elements.pbt_s === 0
                                                   && Date.parse(last.to) > Date.now() - 3600e3);
    S.chart = oeeChart("chart", D.series);
    lossChart("loss", D.kpis?.total?.elements);
    paretoChart("pareto", D.losses, reasonColors(D.losses));
    document.getElementById("loss-types").innerHTML = lossTypeList(D.losses);
    countersChart("counters", D.series);
    deltasChart("deltas", D.deltas);
    if (D.deltas) document.getElementById("deltas-windows").textContent =
      `${t("baselineWindow", {from: when(D.deltas.baseline_window.from), to: when(D.deltas.baseline_window.to)})} · `
      + `${t("current")} ${when(D.deltas.window.from)} → ${when(D.deltas.window.to)}`;
    const unknown = !!S.failures;  // after a failed refresh the states are not known
    document.querySelector("#devices tbody").innerHTML = S.devices.map(x => {
      const s = unknown ? "unknown" : x.state, cls = unknown ? "unknown" : x.state === "connected" ? "ok" : "bad";
      return `<tr data-device="${esc(x.name)}"><td>${esc(x.name)}</td><td>${esc(x.protocol)}</td>
        <td class="${cls}">${esc(tr("deviceStates", s))}</td><td>${when(x.last_success, {timeStyle: "medium"})}</td>
        <td class="raw">${esc(x.last_error ?? "")}</td></tr>`;
    }).join("");
  },
};
