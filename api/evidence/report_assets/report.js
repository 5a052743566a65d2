"use strict";
// The evidence pack's report: every number below was computed by tierproof (Python, kpi/) when
// the report was written and is embedded in #report-data; this script only formats and draws.
const D = JSON.parse(document.getElementById("report-data").textContent);

// ---------------------------------------------------------------- labels, one dictionary per language
const LABELS = {
  "en": {
    language: "Language", print: "Print / PDF", title: "Smart-factory tier evidence report",
    lead: "What the gateway measured, how it computed the tier figures from it, and what each tier criterion's verdict rests on.",
    tierVerdicts: "Verdict per tier", contents: "Contents",
    secTiers: "Tier readiness", secCompare: "Baseline vs current", secTrends: "KPI trends",
    secTimelines: "Machine state timelines", secCoverage: "Coverage and gaps", secMethods: "Methods",
    tiersNote: "Each criterion of each tier: the figure's value with its 95 % interval, the threshold it is judged against, the verdict, whether it is measured by the gateway or declared by the plant, the coverage of the data it rests on, and what is missing. Explanations quoted from the assessment are in English.",
    compareNote: "Every figure of the assessment in the baseline and the current window, with the 95 % interval of the current value and of the relative change (day-block bootstrap); below, each machine's KPIs per window, computed from the hourly time elements of the pack.",
    trendsNote: "Plant OEE and good parts per hour and per local day, computed from the hourly time elements (inputs/hourly.csv) with the ISO 22400 formulas: elements summed over machines and hours first, then divided. Good parts of different products are added together here.",
    timelinesNote: "Each machine's OPC 40001-1 state over both windows (inputs/states.csv); the shaded band is planned busy time. Unknown: no known state (before the first sample, in a gap, or after a bad sample).",
    coverageNote: "Coverage is known planned busy time / planned busy time. Gaps are the intervals a device delivered nothing (inputs/gaps.csv); they are unknown time, never counted as a state.",
    methodsNote: "How every number of this report was computed, so that an auditor can redo it from the pack alone.",
    oeeTrendTitle: "Plant OEE per hour", partsTrendTitle: "Good parts per hour (all products)",
    dailyTrendTitle: "Plant OEE and good parts per local day (first and last day clipped to the window)", assetOeeTitle: "OEE per machine", deltaChartTitle: "Relative change of each figure, baseline → current, with its 95 % interval",
    baselineWindow: "Baseline window", currentWindow: "Current window",
    gapsTitle: "Gaps", samplesTitle: "Samples in the pack per tag", formulasTitle: "Formulas (ISO 22400-2)",
    elementsTitle: "State and mode → time element (OPC 40001-1 → ISO 22400-2)", bootstrapTitle: "Intervals (bootstrap)",
    versionsTitle: "Versions", declaredTitle: "Versions of the declared items used",
    declaredItemsTitle: "Declared items (declared.json)", noDeclared: "The plant declared nothing.",
    abbrTitle: "Abbreviations (ISO 22400-2)", abbr: "Abbreviation", isoName: "Name", mappingTitle: "Signal mapping (from config.yaml)",
    chartsCredit: "Charts drawn with Apache ECharts 6.1.0 (Apache License 2.0), embedded in this file with its licence notice.",
    plantTimeZone: "Plant time zone", baselineRange: "Baseline window", currentRange: "Current window",
    criteriaVersion: "Criteria version", algorithmVersion: "Algorithm version", configSha: "Configuration SHA-256",
    tierproofVersion: "tierproof version", created: "Pack created",
    configFingerprint: "Configuration fingerprint",
    tier: "Tier", criterion: "Criterion", figure: "Figure", value: "Value", interval: "95 % interval",
    threshold: "Threshold", verdict: "Verdict", source: "Measured / declared", coverage: "Coverage",
    missing: "What is missing", supplied: "supplied by {who}, {when}", fromTier: "from {tier}",
    unit: "Unit", baseline: "Baseline", current: "Current", change: "Change", changeInterval: "Change interval",
    remark: "Remark", machine: "Machine", availability: "Availability", effectiveness: "Effectiveness",
    quality: "Quality", oee: "OEE", goodParts: "Good parts", pbtH: "Planned busy h", knownH: "Known h",
    device: "Device", deviceProtocol: "Device (protocol)", start: "Start", end: "End", duration: "Duration", reason: "Reason", allMachines: "all machines of the device",
    noGaps: "No gaps were recorded in either window.", tag: "Tag", role: "Role", samples: "Samples", badSamples: "Bad",
    kpi: "KPI", formula: "Formula", meaning: "Meaning", state: "State", mode: "Mode", element: "Element", anyMode: "any",
    method: "Method", seed: "Seed", resamples: "Resamples", minDays: "Minimum days for an interval",
    confidence: "Confidence", coverageMin: "Minimum coverage for a verdict", days: "Days per window",
    history: "History held", item: "Item", version: "Version", suppliedBy: "Supplied by", suppliedAt: "Supplied at", origin: "Source",
    where: "Read from", enumMap: "Value → canonical name", scale: "Scale",
    notComputed: "Figures not computed by this version", none: "none", planned: "Planned busy time",
    perHour: "per hour", perDay: "per local day", seriesOf: "{what}, {window}, {per}",
    hours: "{n} h", years: "{n} years", unknown: "Unknown", noData: "no data",
    measured: "measured", declared: "declared",
    verdicts: {met: "met", not_met: "not met", insufficient_data: "insufficient data",
               point_estimate_only: "point estimate only"},
    states: {Executing: "Executing", NotExecuting: "Not executing", OutOfService: "Out of service",
             NotAvailable: "Not available", "": "Unknown"},
    modes: {Processing: "Processing", Setup: "Setup", Maintenance: "Maintenance", None: "None", "": "unknown"},
    elements: {not_available: "not available", malfunction: "ADET (malfunction)", apt: "APT",
               minor_stop: "ADET (minor stop)", asut: "ASUT", maintenance: "maintenance", other: "other"},
    tiers: {basic: "basic", advanced: "advanced", excellence: "excellence", leading: "leading"},
    figures: {
      automation_rate: "Automation rate", defect_rate: "Defect rate", production_efficiency: "Production efficiency",
      production_efficiency_labour: "Production efficiency per labour hour",
      energy_per_standard_hour_kwh: "Energy per standard hour", energy_per_unit_kwh: "Energy per unit",
      carbon_per_standard_hour_kg: "Carbon per standard hour", carbon_per_unit_kg: "Carbon per unit",
      cnc_rate_key_equipment: "CNC rate of key equipment", networking_rate: "Networking rate",
      history_years: "History held", ai_scenario_share: "Share of AI scenarios", operating_cost: "Operating cost",
      maturity_level: "Maturity level", cnc_rate_key_equipment_declared: "CNC rate of key equipment (declared)"},
    units: {fraction: "fraction", "standard h / worked h": "standard h / worked h",
            "standard h / labour h": "standard h / labour h", "kWh/standard h": "kWh / standard h",
            "kWh/unit": "kWh / unit", "kg CO2/standard h": "kg CO₂ / standard h", "kg CO2/unit": "kg CO₂ / unit"},
    criteria: {},
    abbrs: {PBT: "planned busy time (shifts − planned stops − holidays)",
            APT: "actual production time (Executing and Processing)",
            ASUT: "actual unit setup time (mode Setup)",
            ADET: "actual unit delay time (malfunctions, minor stops)", AUPT: "actual unit processing time (APT + ASUT)",
            PQ: "produced quantity", GQ: "good quantity", SQ: "scrap quantity",
            PRU: "planned run time per unit (ideal cycle time)"},
    formulaText: {
      availability: "APT / known PBT  (apt_s / known_s)",
      effectiveness: "PRU × PQ in known PBT / APT  (ideal_s / apt_pru_s)",
      quality_ratio: "GQ / PQ in known PBT  (gq_plan / pq_plan)",
      oee: "availability × effectiveness × quality ratio",
      coverage: "known PBT / PBT  (known_s / pbt_s)",
      automation_rate: "Σ apt_auto_s / Σ apt_mode_known_s",
      defect_rate: "Σ sq_plan / Σ pq_plan",
      production_efficiency: "Σ PRU × gq_plan / Σ (APT + ASUT + ADET)  (std_gq_s / std_busy_s)",
      energy_per_standard_hour_kwh: "Σ energy_std_kwh / Σ (energy_std_gq_s / 3600)",
      networking_rate: "Σ reporting asset-days / Σ planned asset-days",
      cnc_rate_key_equipment: "Σ reporting digital key asset-days / Σ key asset-days",
      delta: "current / baseline − 1"},
    formulas: {
      availability: "Availability", effectiveness: "Effectiveness", quality_ratio: "Quality ratio", oee: "OEE",
      coverage: "Coverage", automation_rate: "Automation rate", defect_rate: "Defect rate",
      production_efficiency: "Production efficiency", energy_per_standard_hour_kwh: "Energy per standard hour",
      networking_rate: "Networking rate", cnc_rate_key_equipment: "CNC rate of key equipment",
      delta: "Relative change"},
    formulaNotes: {
      availability: "actual production time over the known part of planned busy time",
      effectiveness: "ideal time of the parts made in known planned time over production time (may exceed 1)",
      quality_ratio: "good over produced parts in known planned time",
      oee: "overall equipment effectiveness",
      coverage: "share of planned busy time whose state and mode are known",
      automation_rate: "production time in automatic channel mode over production time of known channel mode",
      defect_rate: "scrap over produced parts in known planned time, per day, summed then divided",
      production_efficiency: "standard hours of good output per worked hour (production, setup, unit delays)",
      energy_per_standard_hour_kwh: "kWh per standard hour of good output, machines with a meter and a PRU",
      networking_rate: "reporting machine-days over machine-days of the register (planned days)",
      cnc_rate_key_equipment: "reporting digitally controlled key machine-days over key machine-days",
      delta: "current window's figure over the baseline's, minus 1"},
  },
  "zh-CN": {
    language: "语言", print: "打印 / PDF", title: "智能工厂梯度评估证据报告",
    lead: "网关测得的数据、由此计算各项梯度指标的方法，以及每条梯度判定条件的结论所依据的内容。",
    tierVerdicts: "各梯度结论", contents: "目录",
    secTiers: "梯度达标情况", secCompare: "基线与当前对比", secTrends: "KPI 趋势",
    secTimelines: "设备状态时间线", secCoverage: "覆盖率与数据缺口", secMethods: "计算方法",
    tiersNote: "每个梯度的每条判定条件：指标值及其 95% 置信区间、判定阈值、结论、该指标由网关实测还是由工厂申报、所依据数据的覆盖率，以及缺少的内容。引自评估结果的说明文字保留英文原文。",
    compareNote: "评估中每项指标在基线窗口和当前窗口的数值，附当前值及相对变化的 95% 置信区间（按日分块自助法）；下方为各设备在每个窗口的 KPI，由证据包中的逐小时时间要素计算。",
    trendsNote: "全厂每小时及每个本地日的 OEE 与合格品数，由逐小时时间要素（inputs/hourly.csv）按 ISO 22400 公式计算：先对设备和小时求和，再相除。此处不同产品的合格品数直接相加。",
    timelinesNote: "每台设备在两个窗口内的 OPC 40001-1 状态（inputs/states.csv）；阴影带为计划工作时间。未知：无已知状态（首个采样之前、数据缺口内或不良采样之后）。",
    coverageNote: "覆盖率 = 已知的计划工作时间 / 计划工作时间。数据缺口是设备未上报任何数据的时段（inputs/gaps.csv），计为未知时间，从不计入任何状态。",
    methodsNote: "本报告每个数字的计算方法，审核人员仅凭证据包即可复算。",
    oeeTrendTitle: "全厂每小时设备综合效率（OEE）", partsTrendTitle: "每小时合格品数（全部产品）",
    dailyTrendTitle: "全厂每个本地日的 OEE 与合格品数（首日和末日截取至窗口内）", assetOeeTitle: "各设备 OEE", deltaChartTitle: "各项指标从基线到当前的相对变化及其 95% 置信区间",
    baselineWindow: "基线窗口", currentWindow: "当前窗口",
    gapsTitle: "数据缺口", samplesTitle: "证据包中各标签的采样数", formulasTitle: "计算公式（ISO 22400-2）",
    elementsTitle: "状态与模式 → 时间要素（OPC 40001-1 → ISO 22400-2）", bootstrapTitle: "置信区间（自助法）",
    versionsTitle: "版本", declaredTitle: "所用申报项的版本",
    declaredItemsTitle: "申报项（declared.json）", noDeclared: "工厂未申报任何内容。",
    abbrTitle: "缩写（ISO 22400-2）", abbr: "缩写", isoName: "名称", mappingTitle: "信号映射（来自 config.yaml）",
    chartsCredit: "图表由 Apache ECharts 6.1.0（Apache 许可证 2.0）绘制，已连同其许可声明嵌入本文件。",
    plantTimeZone: "工厂时区", baselineRange: "基线窗口", currentRange: "当前窗口",
    criteriaVersion: "判定条件版本", algorithmVersion: "算法版本", configSha: "配置 SHA-256",
    tierproofVersion: "tierproof 版本", created: "证据包生成时间",
    configFingerprint: "配置指纹",
    tier: "梯度", criterion: "判定条件", figure: "指标", value: "数值", interval: "95% 置信区间",
    threshold: "阈值", verdict: "结论", source: "实测 / 申报", coverage: "覆盖率",
    missing: "缺少的内容", supplied: "提供者 {who}，{when}", fromTier: "来自{tier}",
    unit: "单位", baseline: "基线", current: "当前", change: "变化", changeInterval: "变化的置信区间",
    remark: "备注", machine: "设备", availability: "可用率", effectiveness: "性能效率",
    quality: "质量率", oee: "设备综合效率", goodParts: "合格品数", pbtH: "计划工作小时", knownH: "已知小时",
    device: "采集设备", deviceProtocol: "采集设备（协议）", start: "开始", end: "结束", duration: "时长", reason: "原因", allMachines: "该采集设备的全部设备",
    noGaps: "两个窗口内均未记录数据缺口。", tag: "标签", role: "角色", samples: "采样数", badSamples: "不良",
    kpi: "指标", formula: "公式", meaning: "含义", state: "状态", mode: "模式", element: "时间要素", anyMode: "任意",
    method: "方法", seed: "随机种子", resamples: "重抽样次数", minDays: "给出区间所需的最少天数",
    confidence: "置信水平", coverageMin: "给出结论所需的最低覆盖率", days: "各窗口天数",
    history: "历史数据时长", item: "申报项", version: "版本", suppliedBy: "提供者", suppliedAt: "提供时间", origin: "来源",
    where: "读取位置", enumMap: "原始值 → 规范名称", scale: "比例系数",
    notComputed: "本版本未计算的指标", none: "无", planned: "计划工作时间",
    perHour: "每小时", perDay: "每个本地日", seriesOf: "{what}，{window}，{per}",
    hours: "{n} 小时", years: "{n} 年", unknown: "未知", noData: "无数据",
    measured: "实测", declared: "申报",
    verdicts: {met: "达标", not_met: "未达标", insufficient_data: "数据不足", point_estimate_only: "仅有点估计"},
    states: {Executing: "运行中", NotExecuting: "待机", OutOfService: "停用", NotAvailable: "不可用", "": "未知"},
    modes: {Processing: "加工", Setup: "调整", Maintenance: "维护", None: "无", "": "未知"},
    elements: {not_available: "不可用", malfunction: "ADET（故障）", apt: "APT", minor_stop: "ADET（短暂停机）",
               asut: "ASUT", maintenance: "维护", other: "其他"},
    tiers: {basic: "基础级", advanced: "先进级", excellence: "卓越级", leading: "领航级"},
    figures: {
      automation_rate: "自动化率", defect_rate: "产品不良率", production_efficiency: "生产效率",
      production_efficiency_labour: "人均工时生产效率", energy_per_standard_hour_kwh: "单位标准工时能耗",
      energy_per_unit_kwh: "单位产品能耗", carbon_per_standard_hour_kg: "单位标准工时碳排放",
      carbon_per_unit_kg: "单位产品碳排放", cnc_rate_key_equipment: "关键工序数控化率",
      networking_rate: "设备联网率", history_years: "历史数据时长", ai_scenario_share: "人工智能应用场景占比",
      operating_cost: "运营成本", maturity_level: "智能制造能力成熟度等级",
      cnc_rate_key_equipment_declared: "关键工序数控化率（申报）"},
    units: {fraction: "比例", "standard h / worked h": "标准小时 / 工作小时",
            "standard h / labour h": "标准小时 / 人工小时", "kWh/standard h": "千瓦时 / 标准小时",
            "kWh/unit": "千瓦时 / 件", "kg CO2/standard h": "千克 CO₂ / 标准小时", "kg CO2/unit": "千克 CO₂ / 件"},
    criteria: {
      networking: "设备联网并上报数据", "cnc-rate": "关键工序数控化率", automation: "自动化率",
      "efficiency-gain": "生产效率较基线的变化", "ai-scenarios": "应用人工智能的场景占比",
      "cost-reduction": "运营成本较基线的变化", "defect-reduction": "产品不良率较基线的变化",
      energy: "单位产出能耗低于行业平均水平", maturity: "智能制造能力成熟度",
      "stable-operation": "改造后稳定运行"},
    abbrs: {PBT: "计划工作时间（班次 − 计划停机 − 节假日）", APT: "实际生产时间（运行中且为加工模式）",
            ASUT: "实际调整时间（调整模式）", ADET: "实际设备延误时间（故障、短暂停机）",
            AUPT: "实际设备加工时间（APT + ASUT）", PQ: "产量", GQ: "合格品数", SQ: "废品数",
            PRU: "单件计划运行时间（理想节拍）"},
    formulaText: {
      availability: "APT / 已知 PBT  (apt_s / known_s)",
      effectiveness: "PRU × 已知 PBT 内的 PQ / APT  (ideal_s / apt_pru_s)",
      quality_ratio: "已知 PBT 内 GQ / PQ  (gq_plan / pq_plan)",
      oee: "可用率 × 性能效率 × 质量率",
      coverage: "已知 PBT / PBT  (known_s / pbt_s)",
      automation_rate: "Σ apt_auto_s / Σ apt_mode_known_s",
      defect_rate: "Σ sq_plan / Σ pq_plan",
      production_efficiency: "Σ PRU × gq_plan / Σ (APT + ASUT + ADET)  (std_gq_s / std_busy_s)",
      energy_per_standard_hour_kwh: "Σ energy_std_kwh / Σ (energy_std_gq_s / 3600)",
      networking_rate: "Σ 上报设备·日 / Σ 计划设备·日",
      cnc_rate_key_equipment: "Σ 上报的数控关键设备·日 / Σ 关键设备·日",
      delta: "当前 / 基线 − 1"},
    formulas: {
      availability: "可用率", effectiveness: "性能效率", quality_ratio: "质量率", oee: "设备综合效率（OEE）",
      coverage: "覆盖率", automation_rate: "自动化率", defect_rate: "产品不良率", production_efficiency: "生产效率",
      energy_per_standard_hour_kwh: "单位标准工时能耗", networking_rate: "设备联网率",
      cnc_rate_key_equipment: "关键工序数控化率", delta: "相对变化"},
    formulaNotes: {
      availability: "实际生产时间 / 计划工作时间中状态已知的部分",
      effectiveness: "已知计划时间内所产零件的理想时间 / 实际生产时间（可大于 1）",
      quality_ratio: "已知计划时间内合格品数 / 产量",
      oee: "设备综合效率",
      coverage: "状态和模式已知的计划工作时间所占比例",
      automation_rate: "自动通道模式下的生产时间 / 通道模式已知的生产时间",
      defect_rate: "已知计划时间内废品数 / 产量，按日求和后相除",
      production_efficiency: "每工作小时（生产、调整、设备延误）的合格品标准小时数",
      energy_per_standard_hour_kwh: "每标准小时合格产出的千瓦时，仅含有电表且有 PRU 的设备",
      networking_rate: "上报数据的设备·日 / 设备台账中的设备·日（计划工作日）",
      cnc_rate_key_equipment: "上报数据且为数字控制的关键设备·日 / 关键设备·日",
      delta: "当前窗口指标 / 基线窗口指标 − 1"},
  },
};

// the formulas, in the symbols of ISO 22400-2 and the names of the pack's hourly.csv columns
const FORMULAS = ["availability", "effectiveness", "quality_ratio", "oee", "coverage", "automation_rate", "defect_rate",
                  "production_efficiency", "energy_per_standard_hour_kwh", "networking_rate", "cnc_rate_key_equipment",
                  "delta"];
const ABBREVIATIONS = ["PBT", "APT", "ASUT", "ADET", "AUPT", "PQ", "GQ", "SQ", "PRU"];
const STATE_COLORS = ["#1a7f37", "#d4a72c", "#cf222e", "#57606a", "#d0d7de"];
const WINDOWS = ["baseline", "current"];

let lang = (() => {
  const m = location.hash.match(/lang=([A-Za-z-]+)/);
  if (m && LABELS[m[1]]) return m[1];
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
})();

function t(key, vars) {
  let s = LABELS[lang][key] ?? LABELS.en[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace("{" + k + "}", v);
  return s;
}
const tg = (group, name, fallback) => LABELS[lang][group][name] ?? fallback ?? LABELS.en[group][name] ?? name;

// ---------------------------------------------------------------- formatting per locale, in the plant's zone
const dash = "—";
const isNum = v => typeof v === "number" && Number.isFinite(v);
const pct = (v, signed) => !isNum(v) ? dash : new Intl.NumberFormat(lang, {style: "percent", maximumFractionDigits: 1,
  minimumFractionDigits: 1, signDisplay: signed ? "exceptZero" : "auto"}).format(v);
const num = (v, digits) => !isNum(v) ? dash : new Intl.NumberFormat(lang, {maximumFractionDigits: digits ?? 3,
  minimumFractionDigits: 0}).format(v);
const sig = v => !isNum(v) ? dash : new Intl.NumberFormat(lang, {maximumSignificantDigits: 4}).format(v);
const when = (ms, opts) => ms == null ? dash : new Intl.DateTimeFormat(lang, {timeZone: D.tz,
  ...(opts || {dateStyle: "medium", timeStyle: "short"})}).format(new Date(ms));
const whenIso = iso => iso == null ? dash : when(Date.parse(iso));
const dayOf = ms => when(ms, {dateStyle: "medium"});
function duration(ms) {
  const h = ms / 3600e3;
  return h >= 1 ? t("hours", {n: num(h, 2)}) : new Intl.NumberFormat(lang, {style: "unit", unit: "minute",
    maximumFractionDigits: 1}).format(ms / 60e3);
}
// a figure's value in its unit: fractions as percent
const fig = (v, unit) => unit === "fraction" ? pct(v) : sig(v);
const range = (lo, hi, f) => (isNum(lo) && isNum(hi)) ? `${f(lo)} … ${f(hi)}` : dash;

// ---------------------------------------------------------------- DOM helpers
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "i18n") { e.dataset.i18n = v; e.textContent = t(v); }
    // a label of a group (verdicts, states, ...): marked, so that a test can see it is translated
    else if (k === "label") { e.dataset.label = v.slice(0, 2).join("."); e.textContent = tg(...v); }
    else if (k === "cls") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}
const th = key => el("th", {i18n: key});
const td = (text, cls) => el("td", {text: text ?? dash, ...(cls ? {cls} : {})});
const tdn = text => td(text, "num");
const tdl = (group, name, fallback) => el("td", {label: [group, name, fallback]});
// English text quoted from the assessment: marked as such for the Chinese page
const quoted = text => text ? el("span", {cls: "quoted", lang: "en", text}) : null;
function table(id, heads, rows) {
  const tbl = document.getElementById(id);
  tbl.replaceChildren(el("thead", {}, el("tr", {}, ...heads.map(th))), el("tbody", {}, ...rows));
}
function kv(id, pairs) {
  document.getElementById(id).replaceChildren(el("tbody", {}, ...pairs.map(([k, v]) => el("tr", {}, th(k), td(v)))));
}

// ---------------------------------------------------------------- sections
function renderSummary() {
  const v = D.versions || {};
  const w = k => D.windows[k] ? `${whenIso(D.windows[k].from)} → ${whenIso(D.windows[k].to)}` : dash;
  kv("summary-table", [
    ["plantTimeZone", D.tz], ["baselineRange", w("baseline")], ["currentRange", w("current")],
    ["criteriaVersion", v.criteria_version], ["algorithmVersion", v.algorithm_version],
    ["configSha", v.config_sha256], ["tierproofVersion", v.tierproof_version],
    ["created", whenIso(v.created)],
  ]);
  const box = document.getElementById("tier-verdicts");
  box.replaceChildren(el("table", {}, el("tbody", {}, ...D.tiers.map(tr => el("tr", {},
    el("th", {label: ["tiers", tr.name]}), verdictCell(tr.verdict),
    td(Object.entries(tr.counts || {}).filter(([, n]) => n).map(([k, n]) => `${tg("verdicts", k)}: ${n}`).join(" · ")))))));
}

const verdictCell = v => el("td", {cls: `verdict v-${v}`, label: ["verdicts", v]});

function criterionValue(c) {
  if (c.measure === "delta") return pct(c.value, true);
  if (c.measure === "years") return t("years", {n: num(c.value, 2)});
  return fig(c.value, c.unit ?? (c.kind === "declared" && c.value <= 1 ? "fraction" : null));
}
function thresholdText(c) {
  const dir = c.direction === ">=" ? "≥" : c.direction === "<=" ? "≤" : (c.direction ?? "");
  const f = c.measure === "delta" ? (x => pct(x, true)) : c.measure === "years" ? (x => num(x, 2))
    : (x => fig(x, c.unit ?? (x <= 1 ? "fraction" : null)));
  return isNum(c.threshold) ? `${dir} ${f(c.threshold)}` : dash;
}

function renderTiers() {
  const box = document.getElementById("tier-tables");
  box.replaceChildren();
  for (const tr of D.tiers) {
    box.append(el("h3", {text: `${tg("tiers", tr.name)} — ${tg("verdicts", tr.verdict)}`}));
    const rows = tr.criteria.map(c => {
      const sup = (c.supplied || []).map(s => t("supplied", {who: s.supplied_by ?? dash, when: s.supplied_at ?? dash}));
      const thr = el("td", {cls: "thr", text: thresholdText(c)});
      if (c.reference) thr.append(el("br"), el("span", {cls: "quoted", lang: "en", text: c.reference}));
      for (const s of sup) thr.append(el("br"), el("span", {cls: "quoted", text: s}));
      const name = el("td", {}, el("span", {label: ["criteria", c.id, c.title]}));
      if (c.tier !== tr.name) name.append(el("br"), el("span", {cls: "quoted", text: t("fromTier", {tier: tg("tiers", c.tier)})}));
      const interval = c.interval ? range(c.interval.low, c.interval.high,
        c.measure === "delta" ? (x => pct(x, true)) : (x => fig(x, c.unit))) : dash;
      return el("tr", {}, name, tdl("figures", c.figure), tdn(criterionValue(c)), tdn(interval), thr,
        verdictCell(c.verdict), el("td", {i18n: c.kind}), tdn(pct(c.coverage)),
        el("td", {}, quoted(c.missing || c.reason)));
    });
    const tbl = el("table", {cls: "tier"}, el("thead", {}, el("tr", {}, ...["criterion", "figure", "value", "interval", "threshold",
      "verdict", "source", "coverage", "missing"].map(th))), el("tbody", {}, ...rows));
    box.append(tbl);
  }
}

function renderCompare() {
  table("figures-table", ["figure", "unit", "baseline", "current", "interval", "change", "changeInterval", "coverage", "remark"],
    D.figures.map(f => el("tr", {}, tdl("figures", f.figure), tdl("units", f.unit, f.unit),
      tdn(fig(f.baseline, f.unit)), tdn(fig(f.current, f.unit)), tdn(range(f.low, f.high, x => fig(x, f.unit))),
      tdn(pct(f.delta, true)), tdn(range(f.delta_low, f.delta_high, x => pct(x, true))), tdn(pct(f.coverage)),
      el("td", {}, quoted(f.missing || f.reason || f.note)))));
  const rows = [];
  for (const a of D.per_asset) {
    for (const w of WINDOWS) {
      const k = a[w];
      if (!k) continue;
      rows.push(el("tr", {}, td(a.path), el("td", {i18n: w}), tdn(pct(k.availability)), tdn(pct(k.effectiveness)),
        tdn(pct(k.quality_ratio)), tdn(pct(k.oee)), tdn(num(k.gq, 0)), tdn(pct(k.coverage))));
    }
  }
  table("assets-table", ["machine", "windowCol", "availability", "effectiveness", "quality", "oee", "goodParts", "coverage"], rows);
}

// ---------------------------------------------------------------- charts (SVG: crisp in print)
const charts = {};
function chart(id) {
  if (!charts[id]) charts[id] = echarts.init(document.getElementById(id), null, {renderer: "svg"});
  return charts[id];
}
const timeAxis = {type: "time", axisLabel: {hideOverlap: true, formatter: v => when(v, {month: "numeric", day: "numeric",
  hour: "2-digit", minute: "2-digit"})}};
const windowName = w => t(w === "baseline" ? "baselineWindow" : "currentWindow");

function renderCharts() {
  const tooltipTime = {trigger: "axis", axisPointer: {label: {formatter: p => when(p.value)}}};
  const series = (key, what, per, type) => WINDOWS.map(w => ({
    id: `${key}_${w}`, name: t("seriesOf", {what, window: windowName(w), per}), type, data: D.trends[key][w],
    showSymbol: D.trends[key][w].length < 50, connectNulls: false, barMaxWidth: 28,
  }));
  chart("chart-oee").setOption({
    animation: false, legend: {top: 0}, grid: {left: 60, right: 20, top: 40, bottom: 40},
    tooltip: {...tooltipTime, valueFormatter: v => pct(v)}, xAxis: timeAxis,
    yAxis: {type: "value", min: 0, axisLabel: {formatter: v => pct(v)}},
    series: series("oee_hour", t("oee"), t("perHour"), "line"),
  }, true);
  chart("chart-parts").setOption({
    animation: false, legend: {top: 0}, grid: {left: 60, right: 20, top: 40, bottom: 40},
    tooltip: {...tooltipTime, valueFormatter: v => num(v, 1)}, xAxis: timeAxis,
    yAxis: {type: "value", min: 0, axisLabel: {formatter: v => num(v, 0)}},
    series: series("parts_hour", t("goodParts"), t("perHour"), "line"),
  }, true);
  // per local day of the plant (the first and last clipped to their window)
  const dayLabel = d => new Intl.DateTimeFormat(lang, {timeZone: "UTC", month: "short", day: "numeric",
    weekday: "short"}).format(new Date(d + "T00:00:00Z"));
  chart("chart-daily").setOption({
    animation: false, legend: {top: 0}, grid: {left: 60, right: 70, top: 50, bottom: 40},
    tooltip: {trigger: "axis"},
    xAxis: {type: "category", data: D.trends.days.map(dayLabel)},
    yAxis: [{type: "value", min: 0, name: t("oee"), axisLabel: {formatter: v => pct(v)}},
            {type: "value", min: 0, name: t("goodParts"), axisLabel: {formatter: v => num(v, 0)}}],
    series: [...series("oee_day", t("oee"), t("perDay"), "bar").map(s => ({...s,
               tooltip: {valueFormatter: v => pct(v)}})),
             ...series("parts_day", t("goodParts"), t("perDay"), "line").map(s => ({...s, yAxisIndex: 1,
               tooltip: {valueFormatter: v => num(v, 0)}}))],
  }, true);
  // every figure's relative change, baseline -> current, with its 95 % interval where it has one
  const changed = D.figures.filter(f => isNum(f.delta));
  chart("chart-deltas").setOption({
    animation: false, grid: {left: 230, right: 30, top: 10, bottom: 30},
    tooltip: {trigger: "item", formatter: p => {
      const f = changed[p.dataIndex];
      return `${tg("figures", f.figure)}<br>${t("change")}: ${pct(f.delta, true)}<br>${t("interval")}: ` +
             range(f.delta_low, f.delta_high, x => pct(x, true));
    }},
    xAxis: {type: "value", axisLabel: {formatter: v => pct(v, true)}},
    yAxis: {type: "category", inverse: true, data: changed.map(f => tg("figures", f.figure))},
    series: [
      {id: "delta", type: "bar", name: t("change"), data: changed.map(f => f.delta), barMaxWidth: 14,
       itemStyle: {color: "#54aeff"}},
      {id: "delta_interval", type: "custom", name: t("changeInterval"),
       data: changed.map((f, i) => [i, f.delta_low, f.delta_high]).filter(d => isNum(d[1]) && isNum(d[2])),
       encode: {x: [1, 2], y: 0},
       renderItem: (params, api) => {
         const lo = api.coord([api.value(1), api.value(0)]), hi = api.coord([api.value(2), api.value(0)]);
         const h = 8, style = {stroke: "#1b1f24", lineWidth: 1.5};
         return {type: "group", children: [
           {type: "line", shape: {x1: lo[0], y1: lo[1], x2: hi[0], y2: hi[1]}, style},
           {type: "line", shape: {x1: lo[0], y1: lo[1] - h / 2, x2: lo[0], y2: lo[1] + h / 2}, style},
           {type: "line", shape: {x1: hi[0], y1: hi[1] - h / 2, x2: hi[0], y2: hi[1] + h / 2}, style}]};
       }},
    ],
  }, true);
  chart("chart-assets").setOption({
    animation: false, legend: {top: 0}, grid: {left: 60, right: 20, top: 40, bottom: 90},
    tooltip: {trigger: "axis", valueFormatter: v => pct(v)},
    xAxis: {type: "category", data: D.per_asset.map(a => a.path.split("/").pop()), axisLabel: {rotate: 35, interval: 0}},
    yAxis: {type: "value", min: 0, axisLabel: {formatter: v => pct(v)}},
    series: WINDOWS.map(w => ({id: `asset_oee_${w}`, name: windowName(w), type: "bar",
                               data: D.per_asset.map(a => a[w] ? a[w].oee : null)})),
  }, true);
  for (const w of WINDOWS) renderTimeline(w);
}

function renderTimeline(w) {
  const tl = D.timeline, span = tl.windows[w];
  const id = `chart-timeline-${w}`;
  const rows = tl[w] || [];
  const names = D.assets.map(a => a.split("/").pop());
  document.getElementById(id).style.height = `${Math.max(160, 70 + 26 * D.assets.length)}px`;
  chart(id).setOption({
    animation: false, grid: {left: 120, right: 20, top: 10, bottom: 40},
    tooltip: {formatter: p => {
      const [a, s, e, st, md] = p.value;
      return `${D.assets[a]}<br>${tg("states", tl.states[st])} · ${tg("modes", tl.modes[md])}<br>` +
             `${when(s)} → ${when(e)} (${duration(e - s)})`;
    }},
    xAxis: {...timeAxis, min: span ? span[0] : null, max: span ? span[1] : null},
    yAxis: {type: "category", data: names, inverse: true, axisTick: {show: false}},
    series: [{
      id: `states_${w}`, type: "custom", name: windowName(w), encode: {x: [1, 2], y: 0}, data: rows,
      renderItem: (params, api) => {
        const y = api.value(0), a = api.coord([api.value(1), y]), b = api.coord([api.value(2), y]);
        const h = api.size([0, 1])[1] * 0.62;
        const shape = echarts.graphic.clipRectByRect({x: a[0], y: a[1] - h / 2, width: Math.max(b[0] - a[0], 0.6), height: h},
          {x: params.coordSys.x, y: params.coordSys.y, width: params.coordSys.width, height: params.coordSys.height});
        return shape && {type: "rect", shape, style: {fill: STATE_COLORS[api.value(3)]}};
      },
      markArea: {silent: true, itemStyle: {color: "rgba(84, 174, 255, 0.12)"},
                 data: D.planned.filter(p => span && p[1] > span[0] && p[0] < span[1]).map(p => [{xAxis: p[0]}, {xAxis: p[1]}])},
    }],
  }, true);
}

function renderLegend() {
  const box = document.getElementById("state-legend");
  box.replaceChildren(...D.timeline.states.map((s, i) => el("span", {},
      el("span", {cls: "swatch", style: `background:${STATE_COLORS[i]}`}), el("span", {label: ["states", s]}))),
    el("span", {}, el("span", {cls: "swatch", style: "background:rgba(84,174,255,.25)"}), el("span", {i18n: "planned"})));
}

function renderCoverage() {
  const rows = [];
  for (const a of D.per_asset) for (const w of WINDOWS) {
    const k = a[w];
    if (k) rows.push(el("tr", {}, td(a.path), el("td", {i18n: w}), tdn(num(k.pbt_h, 2)), tdn(num(k.known_h, 2)), tdn(pct(k.coverage))));
  }
  table("coverage-table", ["machine", "windowCol", "pbtH", "knownH", "coverage"], rows);
  const gaps = D.gaps.map(g => el("tr", {}, td(g.asset || t("allMachines")), td(g.device), td(when(g.start)), td(when(g.end)),
    tdn(duration(g.end - g.start)), el("td", {}, quoted(g.reason))));
  if (!gaps.length) gaps.push(el("tr", {}, el("td", {colspan: "6", i18n: "noGaps"})));
  table("gaps-table", ["machine", "device", "start", "end", "duration", "reason"], gaps);
  table("samples-table", ["machine", "role", "tag", "samples", "badSamples"],
    D.samples.map(s => el("tr", {}, td(s.asset), td(s.role), td(s.tag), tdn(num(s.n, 0)), tdn(num(s.bad, 0)))));
}

function renderLosses() {
  const L = D.losses;
  const rows = (L ? L.pareto : []).map((p, i) => el("tr", {}, tdn(String(i + 1)),
    p.kind === "loss_type" ? tdl("lossTypes", p.key) : el("td", {}, quoted(p.label)),
    tdn(num(p.hours, 2)), tdn(num(p.stops, 0)), tdn(pct(p.share)), tdn(pct(p.cumulative_share))));
  if (!rows.length) rows.push(el("tr", {}, el("td", {colspan: "6", i18n: "noLosses"})));
  table("pareto-table", ["rank", "lossReason", "lossHours", "stopsCol", "lossShare", "cumShare"], rows);
}

function renderMethods() {
  const m = D.methods;
  table("abbr-table", ["abbr", "isoName"], ABBREVIATIONS.map(k => el("tr", {}, td(k), tdl("abbrs", k))));
  table("formulas-table", ["kpi", "formula", "meaning"], FORMULAS.map(k => el("tr", {},
    tdl("formulas", k), el("td", {}, el("code", {text: tg("formulaText", k)})), tdl("formulaNotes", k))));
  table("elements-table", ["state", "mode", "element"], m.elements.map(([s, md, e]) => el("tr", {},
    tdl("states", s), md === "*" ? el("td", {i18n: "anyMode"}) : tdl("modes", md), tdl("elements", e))));
  const b = m.bootstrap || {};
  const days = m.days || {};
  kv("bootstrap-table", [
    ["method", b.method], ["confidence", pct(b.confidence)], ["seed", String(b.seed ?? dash)],
    ["resamples", num(b.n_resamples, 0)], ["minDays", num(b.min_days, 0)], ["coverageMin", pct(m.coverage_min)],
    ["days", WINDOWS.map(w => `${t(w)}: ${(days[w] || []).length}`).join(" · ")],
    ["history", m.history && isNum(m.history.years) ? `${t("years", {n: num(m.history.years, 3)})} (${whenIso(m.history.first_sample)} →)` : dash],
    ["notComputed", (m.not_computed || []).map(f => tg("figures", f)).join(", ") || t("none")],
  ]);
  const v = D.versions || {};
  kv("versions-table", [["criteriaVersion", v.criteria_version], ["algorithmVersion", v.algorithm_version],
    ["configSha", v.config_sha256], ["configFingerprint", m.config_fingerprint], ["tierproofVersion", v.tierproof_version]]);
  table("declared-items-table", ["item", "value", "unit", "suppliedBy", "suppliedAt", "origin"],
    m.declared.map(d => el("tr", {}, td(d.item), tdn(isNum(d.value) ? num(d.value, 4) : (d.value ?? dash)),
      td(d.unit ?? dash), td(d.supplied_by ?? dash), td(d.supplied_at ?? dash), el("td", {}, quoted(d.source)))));
  if (!m.declared.length) {
    document.querySelector("#declared-items-table tbody").append(el("tr", {}, el("td", {colspan: "6", i18n: "noDeclared"})));
  }
  table("declared-table", ["item", "version", "suppliedBy", "suppliedAt", "origin"],
    Object.entries(m.declared_versions).map(([k, d]) => el("tr", {}, td(k), tdn(String(d.version ?? dash)),
      td(d.supplied_by), td(d.supplied_at ? whenIso(d.supplied_at) : dash), el("td", {}, quoted(d.reason || d.source)))));
  // one machine's tags under one cell of its name (rowspan): the table is long
  const span = {};
  for (const r of m.mapping) span[r.asset] = (span[r.asset] || 0) + 1;
  table("mapping-table", ["machine", "role", "deviceProtocol", "where", "enumMap", "scale", "unit"],
    m.mapping.map((r, i) => el("tr", {},
      i === 0 || m.mapping[i - 1].asset !== r.asset ? el("td", {rowspan: String(span[r.asset]), text: r.asset}) : null,
      td(r.role), td(`${r.device} (${r.protocol})`), td(r.source), td(r.enum || dash),
      tdn(r.scale == null ? dash : String(r.scale)), td(r.unit ?? dash))));
}

// ---------------------------------------------------------------- language, printing
Object.assign(LABELS.en, {windowCol: "Window", baseline: "Baseline", current: "Current"});
Object.assign(LABELS["zh-CN"], {windowCol: "窗口", baseline: "基线", current: "当前"});
Object.assign(LABELS.en, {secLosses: "Losses by reason", lossesNote: "Where the current window's "
  + "time went beyond production, largest first: each stop reason's hours (from the stop_reason "
  + "tags, OPC UA events and operators' annotations), speed loss and scrap, with their share of "
  + "all losses and the cumulative share (losses.json, stops.csv; recomputed by tierproof verify).",
  rank: "#", lossReason: "Reason or loss", lossHours: "Hours", stopsCol: "Stops", lossShare: "Share",
  cumShare: "Cumulative", noLosses: "No losses in the current window.",
  lossTypes: {speed_loss: "Speed loss", scrap_rework: "Scrap and rework"}});
Object.assign(LABELS["zh-CN"], {secLosses: "按原因的损失", lossesNote: "当前窗口中生产以外的时间去向，"
  + "由大到小：各停机原因的小时数（来自 stop_reason 标签、OPC UA 事件与操作员标注）、速度损失与废品，"
  + "及其占全部损失的比例和累计比例（losses.json、stops.csv；tierproof verify 会重新计算）。",
  rank: "序号", lossReason: "原因或损失", lossHours: "小时", stopsCol: "停机次数", lossShare: "占比",
  cumShare: "累计占比", noLosses: "当前窗口内没有损失。",
  lossTypes: {speed_loss: "速度损失", scrap_rework: "废品与返工"}});

function render() {
  document.documentElement.lang = lang;
  document.title = t("title");
  document.getElementById("lang").value = lang;
  renderSummary(); renderTiers(); renderCompare(); renderLegend(); renderCoverage(); renderLosses(); renderMethods();
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  renderCharts();
}
document.getElementById("lang").addEventListener("change", e => { lang = e.target.value; render(); });
document.getElementById("print").addEventListener("click", () => window.print());
// A4 portrait's printable width at 96 dpi (186 mm): the charts are drawn at that size to print
const resizeAll = size => { for (const c of Object.values(charts)) c.resize(size); };
const printing = window.matchMedia("print");
// an explicit width stays with the chart until "auto" gives it back the box's width
const AUTO = {width: "auto"};
printing.addEventListener("change", e => resizeAll(e.matches ? {width: 703} : AUTO));
window.addEventListener("beforeprint", () => resizeAll({width: 703}));
window.addEventListener("afterprint", () => resizeAll(AUTO));
// any later change of a chart's box (window resized, back from print) redraws it at its size
const observer = new ResizeObserver(entries => {
  for (const e of entries) {
    const c = echarts.getInstanceByDom(e.target);
    if (c && Math.abs(c.getWidth() - e.target.clientWidth) > 1) c.resize(AUTO);
  }
});
for (const e of document.querySelectorAll(".chart")) observer.observe(e);
render();
window.reportReady = true;
