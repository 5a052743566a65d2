// #/tag/<path>?from=&to= — one tag: its latest sample, its history per bucket (or, for a state
// or mode tag, its timeline), its raw samples page by page (the data every KPI traces to), a
// CSV download, and the gaps of its machine in the window.
import {t, tr} from "../i18n.js";
import {S, api, download, enc, esc, link, lineOf, loadDevices, loadTags, nameHtml, num, short, stateName, when,
  windowMs, windowSpec, wq} from "../core.js";
import {ganttChart, historyChart, segments} from "../charts.js";

const PAGE = 100;
const ENUMERATED = new Set(["state", "mode", "channel_mode"]);

export function tagView(path, params) {
  const w = () => windowSpec(params);
  const base = `/api/v1/tags/${enc(path)}`;
  let cursor = null;
  return {
    crumbs: () => { const a = lineOf(path); return [[lineOf(a), link.line(lineOf(a))], [short(a), link.machine(a)], [short(path), ""]]; },
    mount(root) {
      root.innerHTML = `<h2><span data-i18n="tag"></span> ${esc(short(path))}</h2><div class="sub">${esc(path)}
        · <span id="tag-meta"></span></div>
        <section class="card wide"><h2 data-i18n="history"></h2><div id="history" class="chart"></div></section>
        <section class="card wide"><h2><span data-i18n="samples"></span> <span id="samples-count" class="sub"></span></h2>
          <p><button id="samples-next" data-i18n="next" hidden></button> <button id="samples-csv" data-i18n="csv"></button></p>
          <div class="scroll"><table id="samples"><thead><tr><th data-i18n="time"></th><th data-i18n="value"></th>
          <th data-i18n="quality_"></th></tr></thead><tbody></tbody></table></div></section>
        <section class="card wide"><h2 data-i18n="gaps"></h2><div id="gaps"></div></section>`;
      document.getElementById("samples-next").addEventListener("click", async () => {
        S.data.samples = await api(`${base}/samples?limit=${PAGE}&cursor=${encodeURIComponent(cursor)}`);
        this.render();
      });
      document.getElementById("samples-csv").addEventListener("click",
        () => download(`${base}/samples?${wq(w())}&limit=10000&format=csv`, `${short(path)}.csv`));
    },
    async load(slow, D) {  // D: this view's data (a view shown meanwhile has its own)
      if (!slow) return;
      await Promise.all([loadTags(), loadDevices()]);
      const x = S.tags.find(y => y.path === path), ww = w();
      const N = {tag: x};  // the new answers, into D at once
      N.latest = await api(`${base}/latest`);
      const hist = x && ENUMERATED.has(x.role)
        ? api(`${base}/samples?${wq(ww)}&limit=10000`).then(s => { N.timeline = s; })
        : api(`${base}/history?${wq(ww)}&bucket=${ww.bucket}&agg=${N.latest.text != null ? "count" : "mean"}`)
            .then(h => { N.history = h; S.plantTz = h.timezone; });
      await Promise.all([
        hist,
        D.samples && cursor ? null : api(`${base}/samples?${wq(ww)}&limit=${PAGE}`).then(s => { N.samples = s; }),
        x ? api(`/api/v1/kpis?asset=${encodeURIComponent(x.asset)}&${wq(ww)}`).then(k => { N.kpis = k; }) : null,
      ]);
      Object.assign(D, N);
    },
    render() {
      const D = S.data, x = D.tag, l = D.latest;
      if (!x) return;
      // (HTML: a state is translated; a text or another role's name is data, class raw)
      const val = (v, name, text) => name != null ? nameHtml(name, x.role)
        : text != null ? `<span class="raw">${esc(text)}</span>` : esc(v == null ? "—" : num(v, 3));
      document.getElementById("tag-meta").innerHTML = `${esc(tr("roles", x.role))} · <span class="raw">${esc(x.unit || "")}</span>`
        + ` · ${esc(x.device)} (${esc(x.protocol)}) · ${val(l?.value, l?.name, l?.text)} ${when(l?.ts, {timeStyle: "medium"})}`;
      if (D.timeline) {
        const span = windowMs(w(), D.timeline.window);
        ganttChart("history", [{label: tr("roles", x.role), names: n => stateName(n, x.role), segments: segments(D.timeline, span)}], span);
      } else S.chart = historyChart("history", D.history, `${short(path)} ${x.unit || ""}`);
      const s = D.samples;
      if (s) {
        cursor = s.next_cursor;
        document.getElementById("samples-next").hidden = !s.next_cursor;
        document.getElementById("samples-count").textContent = `${when(s.window.from)} → ${when(s.window.to)} · ${num(s.count, 0)}`;
        document.querySelector("#samples tbody").innerHTML = s.ts.map((ts, i) => `<tr><td>${when(ts, {dateStyle: "short", timeStyle: "medium"})}</td>
          <td>${val(s.value[i], s.name?.[i])}</td><td>${esc(tr("qualities", ["good", "uncertain"][s.quality[i]] ?? "bad"))}</td></tr>`).join("");
      }
      const gaps = D.kpis?.assets?.[x.asset]?.evidence?.gaps;
      document.getElementById("gaps").innerHTML = gaps == null ? "" : !gaps.length ? `<p>${t("noGaps")}</p>`
        : `<div class="scroll"><table><thead><tr><th>${t("device")}</th><th>${t("from")}</th><th>${t("to")}</th>
           <th>${t("reason")}</th></tr></thead><tbody>${gaps.map(g => `<tr><td>${esc(g.device)}</td>
           <td>${when(g.start)}</td><td>${when(g.end)}</td><td class="raw">${esc(g.reason)}</td></tr>`).join("")}</tbody></table></div>`;
    },
  };
}
