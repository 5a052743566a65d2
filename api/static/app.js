// The dashboard's frame: the route (#/, #/line/..., #/machine/..., #/tag/..., #/tiers), the
// header (window and shift picker, language), the banners, and the refresh loop: one refresh
// at a time, the next scheduled only after the previous one ended, later when the gateway is
// slow or unreachable.
import {I18N, applyLabels, setLang, t, tr} from "./i18n.js";
import {NeedKey, S, Unreachable, api, esc, setKey, when} from "./core.js";
import {disposeCharts} from "./charts.js";
import {overview} from "./views/overview.js";
import {lineView, machineView} from "./views/asset.js";
import {tagView} from "./views/tag.js";
import {tiersView} from "./views/tiers.js";

// ---------------------------------------------------------------- routes
function route() {
  const h = location.hash.replace(/^#/, "");
  const [p, q] = h.split("?");
  const params = new URLSearchParams(q || "");
  const m = /^\/(line|machine|tag|tiers)(?:\/(.*))?$/.exec(p || "");
  const arg = m?.[2] ? m[2].split("/").map(decodeURIComponent).join("/") : "";
  if (m?.[1] === "line" && arg) return lineView(arg);
  if (m?.[1] === "machine" && arg) return machineView(arg);
  if (m?.[1] === "tag" && arg) return tagView(arg, params);
  if (m?.[1] === "tiers") return tiersView(params);
  return overview;
}
function show() {
  disposeCharts();
  S.data = {};
  S.view = route();
  document.getElementById("window-label").hidden = !!S.view.hideWindow;
  S.view.mount(document.getElementById("main"));
  applyLabels();
  refreshSoon();
}

// ---------------------------------------------------------------- header: shifts of the last 7 days
function fillShifts() {
  const sel = document.getElementById("window-picker"), keep = sel.value;
  for (const o of [...sel.querySelectorAll("option[data-shift]")]) o.remove();
  for (const b of S.shifts) {
    const o = document.createElement("option");
    o.value = `shift:${b.shift}:${b.date}`; o.dataset.shift = "1";
    o.textContent = `${t("shift")}: ${tr("shifts", b.shift)} ${when(b.from, {dateStyle: "medium"})}`;
    sel.append(o);
  }
  sel.value = [...sel.options].some(o => o.value === keep) ? keep : "24h";
}
async function loadShifts() {  // the plant's zone and its shift occurrences, once an hour
  if (Date.now() - S.shiftsAt < 3_600_000) return;
  const s = await api("/api/v1/kpis/series?from=now-7d&bucket=shift");
  S.plantTz = s.timezone; S.shifts = s.buckets.filter(b => b.shift).reverse(); S.shiftsAt = Date.now();
}

function render() {
  applyLabels();
  document.title = "tierproof — " + (S.view === overview ? t("overview") : S.view.crumbs().map(c => c[0]).join(" › "));
  fillShifts();
  document.getElementById("crumbs").innerHTML = [[t("plant"), "#/"], ...S.view.crumbs()]
    .map(([label, href]) => href ? `<a href="${esc(href)}">${esc(label)}</a>` : `<span>${esc(label)}</span>`).join(" › ");
  document.getElementById("zone").textContent = t("zone", {tz: S.plantTz});
  const w = S.data.kpis?.window || S.data.series?.window;
  document.getElementById("window").textContent = w ? t("windowText", {from: when(w.from), to: when(w.to)}) : "";
  if (S.lastOk) document.getElementById("updated").textContent = t("updated", {t: when(S.lastOk, {timeStyle: "medium"})});
  try { S.view.render(); } catch (e) { console.error(e); }
  const b = document.getElementById("banner");  // the gateway did not answer the last refresh
  b.hidden = !S.unreachable;
  if (S.unreachable) b.textContent = t("unreachable", {t: S.lastOk ? when(S.lastOk, {timeStyle: "medium"}) : "—", s: S.retryS});
  const slow = document.getElementById("slow");
  slow.hidden = S.unreachable || S.periodMs <= 2 * PERIOD_MS;
  slow.textContent = t("slow", {s: Math.round(S.periodMs / 1000)});
}

// ---------------------------------------------------------------- the API key form
function askKey(why) {
  document.getElementById("keyform").hidden = false;
  document.getElementById("keywhy").textContent = why || "";
}
document.getElementById("keyform").addEventListener("submit", ev => {
  ev.preventDefault();
  setKey(document.getElementById("key").value.trim());
  document.getElementById("keyform").hidden = true;
  refreshSoon();
});

// ---------------------------------------------------------------- refresh: never overlapping, backing off
const PERIOD_MS = 5000, SLOW_PERIOD_MS = 60_000, MAX_BACKOFF_MS = 60_000;
let timer = null, again = false, slowDue = 0;
function schedule(ms) { clearTimeout(timer); timer = setTimeout(cycle, ms); }
// a new view, window or key: refresh now, or right after the refresh in flight (never beside it)
function refreshSoon() { slowDue = 0; if (S.inFlight) again = true; else schedule(0); }
async function cycle() {
  timer = null;
  S.inFlight++; S.maxInFlight = Math.max(S.maxInFlight, S.inFlight); S.cycles++;
  const t0 = performance.now(), view = S.view, data = S.data;  // this view's data, whatever comes
  const slow = Date.now() >= slowDue;
  let delay;
  try {
    await view.load(slow, data);
    if (slow && data === S.data) slowDue = Date.now() + SLOW_PERIOD_MS;  // not a view left meanwhile
    S.failures = 0; S.unreachable = false; S.lastOk = new Date().toISOString();
    document.getElementById("err").textContent = "";
    // slow answers: wait three times as long as the refresh took before the next one (not
    // after a refresh that included a deliberately heavy request: an assessment)
    S.lastMs = performance.now() - t0;
    delay = data.heavy ? PERIOD_MS : Math.min(MAX_BACKOFF_MS, Math.max(PERIOD_MS, 3 * S.lastMs));
    data.heavy = false;
    S.periodMs = delay;
    // then what takes the gateway seconds (a bootstrap: deltas), drawn when it comes, still
    // before the next refresh is scheduled
    // and the shifts of the picker (once an hour)
    if (data === S.data && (view.heavy || Date.now() - S.shiftsAt >= 3_600_000)) {
      render();
      await loadShifts();
      if (view.heavy) await view.heavy(data);
    }
  } catch (e) {
    S.failures++; S.unreachable = e instanceof Unreachable;
    delay = Math.min(MAX_BACKOFF_MS, PERIOD_MS * 2 ** S.failures);
    if (e instanceof NeedKey) { askKey(e.message); delay = null; }  // nothing to retry until a key is given
    else if (e instanceof Unreachable) S.retryS = Math.round(delay / 1000);
    else document.getElementById("err").textContent = t("refreshFailed", {e: e.message});
  } finally {
    S.inFlight--;
  }
  if (data === S.data) render();  // not for a view left meanwhile
  if (again) { again = false; delay = 0; }
  if (delay != null) schedule(delay);
}

document.getElementById("lang").value = I18N.lang;
document.getElementById("lang").addEventListener("change", ev => { setLang(ev.target.value); render(); });
document.getElementById("window-picker").addEventListener("change", refreshSoon);
window.addEventListener("hashchange", show);
show();
