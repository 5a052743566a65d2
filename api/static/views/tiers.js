// #/tiers?tier=<name> — tier readiness from GET /api/v1/tiers/assessment: per criterion the
// value, its 95 % interval, the threshold, the verdict, measured or declared, coverage, what is
// missing, and the raw evidence behind it (the tags' samples and the machines' gaps in the
// assessed window, or who declared what); the evidence pack of the tier (GET /api/v1/evidence).
import {t, tr} from "../i18n.js";
import {S, api, assetsOf, download, esc, link, num, pct, short, when} from "../core.js";

const PERIOD_MS = 300_000;  // an assessment bootstraps weeks of days: not every refresh
// the roles whose samples a measured figure is computed from (docs/kpis.md)
const ROLES = {
  networking_rate: ["state"], cnc_rate_key_equipment: ["state"], automation_rate: ["state", "mode", "channel_mode"],
  production_efficiency: ["state", "mode", "good_count"], defect_rate: ["total_count", "good_count", "reject_count"],
  energy_per_standard_hour_kwh: ["energy_kwh", "good_count"], energy_per_unit_kwh: ["energy_kwh", "good_count"],
  history_years: ["state"],
};
const DELTA_UNIT = "relative change";

function fmt(v, unit, measure) {
  if (v == null) return "—";
  if (measure === "delta") return pct(v, 1, true);  // a relative change: signed
  if (unit === "fraction") return pct(v);
  if (measure === "years") return `${num(v, 2)} ${t("years")}`;
  return `${num(v, 2)}${unit ? ` <span class="raw">${esc(unit)}</span>` : ""}`;  // the API's unit, as it is
}

// the assessed window: as configured (kpi.current), the last days, or dates of the plant
// (bare dates are the plant's local midnights; the "to" date is inclusive: the API gets the
// midnight after it)
const PRESETS = ["now-7d", "now-14d", "now-30d"];
const nextDay = d => new Date(Date.parse(d + "T00:00:00Z") + 86400e3).toISOString().slice(0, 10);
const prevDay = d => new Date(Date.parse(d + "T00:00:00Z") - 86400e3).toISOString().slice(0, 10);
const isDate = s => /^\d{4}-\d{2}-\d{2}$/.test(s || "");

export function tiersView(params) {
  let tier = params.get("tier") || "basic";
  const from = params.get("from"), to = params.get("to");
  const preset = !from ? "" : PRESETS.includes(from) && (!to || to === "now") ? from : "custom";
  const win = new URLSearchParams(Object.entries({from, to}).filter(([, v]) => v)).toString();
  const qs = (t0) => new URLSearchParams(Object.entries({tier: t0, from, to}).filter(([, v]) => v)).toString();
  return {
    crumbs: () => [[t("tiersNav"), link.tiers()]],
    hideWindow: true,
    mount(root) {
      root.innerHTML = `<h2 data-i18n="tiersNav"></h2>
        <p class="tierbar"><label><span data-i18n="tier"></span> <select id="tier-picker"></select></label>
          <label><span data-i18n="assessWindow"></span> <select id="tier-window">
            <option value="" data-i18n="asConfigured"></option><option value="now-7d" data-i18n="last7d"></option>
            <option value="now-14d" data-i18n="last14d"></option><option value="now-30d" data-i18n="last30d"></option>
            <option value="custom" data-i18n="customDates"></option></select></label>
          <span id="tier-dates" ${preset === "custom" ? "" : "hidden"}>
            <label><span data-i18n="from"></span> <input type="date" id="tier-from" value="${isDate(from) ? from : ""}"></label>
            <label><span data-i18n="toInclusive"></span> <input type="date" id="tier-to" value="${isDate(to) ? prevDay(to) : ""}"></label>
            <button id="tier-apply" data-i18n="apply"></button></span>
          <a id="evidence-pack" href="/api/v1/evidence?${qs(tier)}" data-i18n="evidencePack"></a>
          <span id="pack-err" class="bad"></span></p>
        <div id="tier-verdict"></div><div class="sub" id="tier-windows"></div>
        <div class="scroll"><table id="criteria"><thead><tr><th data-i18n="criterion"></th><th data-i18n="kind"></th>
          <th data-i18n="value"></th><th data-i18n="interval"></th><th data-i18n="threshold"></th><th data-i18n="verdict"></th>
          <th data-i18n="coverage"></th><th data-i18n="missing"></th><th data-i18n="evidence"></th></tr></thead><tbody></tbody></table></div>`;
      const pick = document.getElementById("tier-picker");
      pick.addEventListener("change", () => { location.hash = link.tiers(pick.value, from, to); });
      const wpick = document.getElementById("tier-window");
      wpick.value = preset;
      wpick.addEventListener("change", () => {
        document.getElementById("tier-dates").hidden = wpick.value !== "custom";
        if (wpick.value !== "custom") location.hash = link.tiers(tier, wpick.value || null, wpick.value ? "now" : null);
      });
      document.getElementById("tier-apply").addEventListener("click", () => {
        const f = document.getElementById("tier-from").value, l = document.getElementById("tier-to").value;
        if (isDate(f) && isDate(l)) location.hash = link.tiers(tier, f, nextDay(l));
      });
      document.getElementById("evidence-pack").addEventListener("click", async ev => {
        ev.preventDefault();  // a plain link would not carry the API key
        const el = document.getElementById("pack-err");
        el.textContent = "";
        try { await download(ev.currentTarget.getAttribute("href"), `evidence-${tier}.zip`); }
        catch (e) { el.textContent = t("noPack", {e: e.message}); }
      });
    },
    async load(slow, D) {  // D: this view's data (a view shown meanwhile has its own)
      if (!S.tags) S.tags = await api("/api/v1/tags");
      if (!D.assessment || Date.now() - D.assessmentAt > PERIOD_MS) {
        D.heavy = true;
        D.assessment = await api("/api/v1/tiers/assessment" + (win ? "?" + win : ""));
        D.assessmentAt = Date.now();
      }
    },
    render() {
      const a = S.data.assessment;
      if (!a) return;
      const names = Object.keys(a.tiers);
      if (!a.tiers[tier]) tier = names[0];
      const pick = document.getElementById("tier-picker");
      pick.innerHTML = names.map(n => `<option value="${esc(n)}">${esc(tr("tiers", n))}</option>`).join("");
      pick.value = tier;
      const res = a.tiers[tier], win = a.window, base = a.baseline_window;
      const c = res.counts;
      document.getElementById("tier-verdict").innerHTML = `<div class="verdict ${esc(res.verdict)}" data-verdict="${esc(res.verdict)}">
        <b>${esc(tr("tiers", tier))}: ${esc(tr("verdicts", res.verdict))}</b> — ${esc(t("counts",
        {met: c.met, pe: c.point_estimate_only, ins: c.insufficient_data, nm: c.not_met}))}</div>`;
      document.getElementById("tier-windows").textContent = `${t("assessedWindow", {from: when(win.from), to: when(win.to)})}`
        + (base ? ` · ${t("baselineWindow", {from: when(base.from), to: when(base.to)})}` : "");
      document.querySelector("#criteria tbody").innerHTML = res.criteria.map(x => {
        const unit = x.measure === "delta" ? DELTA_UNIT : a.figures[x.figure]?.unit;
        const iv = x.interval ? `[${fmt(x.interval.low, unit, x.measure)}, ${fmt(x.interval.high, unit, x.measure)}]` : "—";
        return `<tr data-criterion="${esc(x.tier)}/${esc(x.id)}" data-verdict="${esc(x.verdict)}">
          <td>${esc(tr("criteria", x.id))}<div class="sub">${esc(tr("figures", x.figure))}</div></td>
          <td>${esc(tr("kinds", x.kind))}</td><td>${fmt(x.value, unit, x.measure)}</td><td>${iv}</td>
          <td>${esc(x.direction)} ${fmt(x.threshold, unit, x.measure)}</td>
          <td class="v-${esc(x.verdict)}">${esc(tr("verdicts", x.verdict))}</td><td>${pct(x.coverage)}</td>
          <td class="raw">${esc(x.missing ?? x.reason ?? "")}</td><td>${evidence(x, win)}</td></tr>`;
      }).join("");
    },
  };
}

// the raw evidence behind a criterion: what was declared and by whom, or the samples of the
// tags its figure is computed from and each machine's page (its gaps and coverage)
function evidence(x, win) {
  const declared = (x.supplied || []).map(s => `<li class="raw">${esc(s.item)}: ${esc(t("supplied",
    {by: s.supplied_by, at: s.supplied_at, src: s.source}))}</li>`).join("");
  const roles = x.kind === "measured" ? ROLES[x.figure] || [] : [];
  if (!roles.length) return declared ? `<ul class="ev">${declared}</ul>` : "—";
  const assets = assetsOf().map(a => {
    const tags = roles.filter(r => S.tags.some(y => y.path === `${a}/${r}`));
    return `<li><a href="${link.machine(a)}">${esc(short(a))}</a>: ${tags.map(r =>
      `<a class="ev-samples" href="${link.tag(`${a}/${r}`, win.from, win.to)}">${esc(tr("roles", r))}</a>`).join(", ")}</li>`;
  }).join("");
  return `<details><summary>${esc(t("samplesOf", {r: roles.map(r => tr("roles", r)).join(", ")}))}</summary>
    <ul class="ev">${assets}${declared}</ul><div class="sub">${esc(t("machinePage"))}</div></details>`;
}
