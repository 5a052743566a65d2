// What every view shares: the API key, requests, the page's state, formatting per locale in
// the plant's time zone, and links between the views (#/line/..., #/machine/..., #/tag/...).
import {I18N, t, tr} from "./i18n.js";

// ---------------------------------------------------------------- the API key (fragment, then localStorage)
// From the URL's fragment (#key=..., as `tierproof demo` prints it; a fragment never reaches a
// server or its logs), then from localStorage; sent as X-API-Key.
const KEY_ITEM = "tierproof.apiKey";
function takeKey() {
  const m = location.hash.match(/(?:^#|&)key=([^&]+)/);
  if (m) {
    const key = decodeURIComponent(m[1]);
    history.replaceState(null, "", location.pathname + location.search);  // not left in the address bar
    try { localStorage.setItem(KEY_ITEM, key); } catch (e) { return key; }
  }
  try { return localStorage.getItem(KEY_ITEM); } catch (e) { return null; }
}
export const KEY = {value: takeKey()};
export function setKey(k) {
  KEY.value = k;
  try { localStorage.setItem(KEY_ITEM, k); } catch (e) { /* private mode: this page only */ }
}
export class NeedKey extends Error {}
export class Unreachable extends Error {}
// every request of the page: a network failure is the gateway unreachable, 401/403 a key to ask for
// a gateway that accepts but never answers is unreachable too (REQUEST_TIMEOUT_MS), not a page
// waiting forever: the refresh loop must end to say so and to try again
const REQUEST_TIMEOUT_MS = 90_000;
export async function request(url) {
  let r;
  try {
    r = await fetch(url, {headers: KEY.value ? {"X-API-Key": KEY.value} : {}, cache: "no-store",
                          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)});
  } catch (e) { throw new Unreachable(e.message); }
  if (r.status === 401 || r.status === 403) throw new NeedKey((await r.json()).detail || r.status);
  if (!r.ok) {
    let why = r.status;
    try { why = (await r.json()).detail || why; } catch (e) { /* not a problem document */ }
    const err = new Error(`${url.split("?")[0]}: ${why}`);
    err.status = r.status;
    throw err;
  }
  return r;
}
export const api = async url => (await request(url)).json();
// a file the API answers, saved by the browser (a plain link would not carry the key)
export async function download(url, fallback) {
  const r = await request(url);
  const name = (r.headers.get("content-disposition") || "").match(/filename="?([^";]+)/)?.[1] || fallback;
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await r.blob()); a.download = name;
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
// at most `limit` requests at once
export async function bounded(items, limit, fn) {
  const out = new Array(items.length); let next = 0;
  async function worker() { while (next < items.length) { const i = next++; out[i] = await fn(items[i]); } }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker));
  return out;
}

// ---------------------------------------------------------------- the page's state (window.tierproof for tests)
export const S = {
  tags: null, tagsAt: 0, shiftsAt: 0, retryS: 0, latest: {}, devices: [], shifts: [], plantTz: "UTC",
  lastOk: null, failures: 0, cycles: 0, inFlight: 0, maxInFlight: 0, lastMs: 0, periodMs: 5000,
  charts: {}, chart: null, view: null, data: {},
};
window.tierproof = S;

// ---------------------------------------------------------------- formatting per locale, in the plant's zone
export const pct = (v, digits = 1, signed = false) => v == null || !isFinite(v) ? "—" : new Intl.NumberFormat(I18N.lang, {
  style: "percent", maximumFractionDigits: digits, minimumFractionDigits: digits,
  signDisplay: signed ? "exceptZero" : "auto"}).format(v);
export const num = (v, digits = 1) => v == null || !isFinite(v) ? "—" : new Intl.NumberFormat(I18N.lang, {
  maximumFractionDigits: digits}).format(v);
export const when = (iso, opts) => iso == null ? "—" : new Intl.DateTimeFormat(I18N.lang, {timeZone: S.plantTz,
  ...(opts || {dateStyle: "medium", timeStyle: "short"})}).format(new Date(iso));
export const esc = s => String(s ?? "").replace(/[&<>"']/g,
  c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
export const short = path => path.split("/").pop();
export const enc = path => path.split("/").map(encodeURIComponent).join("/");
export const lineOf = asset => asset.split("/").slice(0, -1).join("/");
export const stateName = (name, role) => tr(role === "mode" || role === "channel_mode" ? "modes" : "states", name);
// a named value as HTML: a state or mode is translated; any other role's name (a stop reason's
// id, a value map's word) is the configuration's, shown as it is (class raw)
const TRANSLATED = new Set(["state", "mode", "channel_mode"]);
export const nameHtml = (name, role) => TRANSLATED.has(role) ? esc(stateName(name, role))
  : `<span class="raw">${esc(name)}</span>`;

// ---------------------------------------------------------------- the window: picker, or a link's from/to
export function windowSpec(params) {
  if (params?.get("from")) {
    const from = params.get("from"), to = params.get("to") || "now";
    const span = (to === "now" ? Date.now() : Date.parse(to)) - Date.parse(from);
    return {from, to, bucket: span <= 26 * 3600e3 ? "15m" : span <= 15 * 86400e3 ? "1h" : "1d", fixed: true};
  }
  const w = document.getElementById("window-picker").value;
  if (w === "7d") return {from: "now-7d", to: "now", bucket: "1d"};
  if (w.startsWith("shift:")) {
    const b = S.shifts.find(x => `shift:${x.shift}:${x.date}` === w);
    if (b) return {from: b.from, to: b.to, bucket: "1h"};
  }
  return {from: "now-24h", to: "now", bucket: "1h"};
}
export const wq = w => `from=${encodeURIComponent(w.from)}&to=${encodeURIComponent(w.to)}`;
// the window's bounds as instants (ms): "now-24h" resolved here, for charts of samples
export function windowMs(w, answered) {
  if (answered) return [Date.parse(answered.from), Date.parse(answered.to)];
  const now = Date.now();
  const rel = s => { const m = /^now(?:-(\d+)([hd]))?$/.exec(s); if (!m) return Date.parse(s);
    return now - (m[1] ? +m[1] * (m[2] === "h" ? 3600e3 : 86400e3) : 0); };
  return [rel(w.from), rel(w.to)];
}

// ---------------------------------------------------------------- links between the views
export const link = {
  plant: () => "#/",
  line: p => `#/line/${enc(p)}`,
  machine: p => `#/machine/${enc(p)}`,
  tag: (p, from, to) => `#/tag/${enc(p)}` + (from ? `?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}` : ""),
  // a tier and the assessed window (from/to as the API takes them; none: kpi.current)
  tiers: (tier, from, to) => `#/tiers` + (tier || from ? "?" + new URLSearchParams(
    Object.entries({tier, from, to}).filter(([, v]) => v)).toString() : ""),
};

// ---------------------------------------------------------------- live data several views share
export async function loadTags() {
  if (!S.tags || Date.now() - S.tagsAt > 600_000) {  // the tag list changes rarely
    S.tags = await api("/api/v1/tags");
    S.tagsAt = Date.now();
  }
  return S.tags;
}
// the latest sample of the selection's tags: one request (GET /api/v1/tags/latest)
export async function loadLatest(query) {
  for (const x of await api(`/api/v1/tags/latest?${query}`)) S.latest[x.path] = x;
}
export async function loadDevices() { S.devices = await api("/api/v1/collector/status"); }
export const assetsOf = prefix => [...new Set((S.tags || []).map(x => x.asset))]
  .filter(a => !prefix || a.startsWith(prefix + "/")).sort();

const STALE_S = 60;  // a device that delivered nothing for a minute: its tiles are stale
function deviceOf(asset) {
  const tag = (S.tags || []).find(x => x.asset === asset);
  return tag && S.devices.find(d => d.name === tag.device);
}
export function isStale(asset) {
  if (!S.lastOk || S.failures) return true;  // the gateway itself did not answer
  const d = deviceOf(asset);
  if (!d) return false;
  return d.state !== "connected" || !d.last_success || (Date.now() - Date.parse(d.last_success)) / 1000 > STALE_S;
}
// one machine's tile: live state, mode, OEE of the window
export function tile(a, kpis) {
  const st = S.latest[`${a}/state`], md = S.latest[`${a}/mode`], ak = kpis?.assets?.[a];
  const stale = isStale(a);
  return `<a class="tile${stale ? " stale" : ""}" href="${link.machine(a)}" data-asset="${esc(a)}"
    data-state="${esc(st?.name ?? "")}" title="${esc(a)}${stale ? " — " + esc(t("staleTitle")) : ""}">
    <div class="name">${esc(short(a))} ${stale ? `<span class="badge">${t("stale")}</span>` : ""}</div>
    <div class="state">${esc(tr("states", st?.name))}</div>
    <div class="mode">${t("mode")}: ${esc(tr("modes", md?.name))}</div>
    <div class="oee">${t("oee")} ${pct(ak?.oee)}</div>
    <div class="meta">${st?.ts ? t("lastSample", {t: when(st.ts, {timeStyle: "medium"})}) : ""}</div></a>`;
}
// OEE, A, P, Q of a KPI entry as a row of figures
export const figures = k => `<div class="figs">${[["oee", "oee"], ["availability", "availability"],
  ["effectiveness", "effectiveness"], ["quality", "quality_ratio"]].map(([l, f]) =>
  `<div class="fig" data-figure="${f}"><span>${t(l)}</span><b>${pct(k?.[f])}</b></div>`).join("")}</div>`;
