// Every label of the dashboard, one dictionary per language; t() fills {placeholders}.
// Texts that come from the API (tier criteria's reasons, device errors) are data, shown as
// they are, in elements of class "raw".
export const LABELS = {
  "en": {
    window: "Window", last24h: "Last 24 h", last7d: "Last 7 days", shift: "Shift", language: "Language",
    apiDocs: "API docs", overview: "Plant overview", tiersNav: "Tier readiness", plant: "Plant",
    hourlyOee: "OEE and its parts", collectors: "Collectors", device: "Device", protocol: "Protocol",
    state: "State", lastSuccess: "Last success", lastError: "Last error",
    keyPrompt: "API key (scope read; `tierproof keys create --scope read` makes one):",
    useKey: "Use key", oee: "OEE", availability: "Availability", effectiveness: "Performance",
    quality: "Quality", mode: "Mode", updated: "updated {t}", windowText: "{from} → {to}",
    zone: "(plant time, {tz})", stale: "stale", staleTitle: "no fresh data: the device is not delivering",
    offShift: "Off shift: no planned production time now.",
    unreachable: "Gateway unreachable since {t}: the figures below are from the last answer. Retrying in {s} s.",
    slow: "The gateway answers slowly: refreshing every {s} s.",
    refreshFailed: "refresh failed: {e}", lastSample: "sample {t}", noData: "no data", unknownState: "unknown",
    loading: "loading…", line: "Line", machine: "Machine", machines: "Machines", tag: "Tag",
    losses: "OEE losses", lossHours: "hours", lossParts: "parts (at the mean ideal cycle time)",
    counters: "Output and energy", good: "Good parts", scrap: "Scrap", energy: "Energy (kWh)",
    deltas: "Baseline vs current (95 % interval)", baseline: "Baseline", current: "Current",
    change: "Change", figure: "Figure", timeline: "State timeline", tags: "Tags", value: "Value",
    role: "Role", unit: "Unit", time: "Time", gaps: "Gaps", noGaps: "No gaps in this window.",
    from: "From", to: "To", reason: "Reason", history: "History", samples: "Raw samples",
    quality_: "Quality", next: "Next page", csv: "Download CSV", count: "Samples",
    tier: "Tier", verdict: "Verdict", criterion: "Criterion", interval: "Interval",
    threshold: "Threshold", kind: "Source", coverage: "Coverage", missing: "Missing / why",
    evidence: "Evidence", evidencePack: "Download evidence pack", noPack: "The evidence pack is not available on this gateway ({e}).",
    counts: "{met} met, {pe} point estimate only, {ins} insufficient data, {nm} not met",
    baselineWindow: "Baseline {from} → {to}", assessedWindow: "Assessed {from} → {to}",
    machinePage: "machine page (gaps, coverage)", samplesOf: "samples: {r}", supplied: "supplied by {by} on {at}: {src}",
    years: "years", pbt: "Planned busy time", apt: "Production time",
    lossNames: {setup: "Setup", malfunction: "Malfunction", minorStops: "Minor stops", maintenance: "Maintenance",
                notAvailable: "Not available", other: "Other", performance: "Performance loss",
                quality: "Quality loss", availabilityLoss: "Availability losses"},
    verdicts: {met: "met", point_estimate_only: "point estimate only", not_met: "not met",
               insufficient_data: "insufficient data"},
    kinds: {measured: "measured", declared: "declared"},
    tiers: {basic: "Basic", advanced: "Advanced", excellence: "Excellence", leading: "Leading"},
    criteria: {"networking": "Equipment networked and reporting", "cnc-rate": "CNC rate of key equipment",
               "automation": "Automation rate", "efficiency-gain": "Production efficiency change vs baseline",
               "ai-scenarios": "AI application scenarios", "cost-reduction": "Operating cost change vs baseline",
               "defect-reduction": "Defect rate change vs baseline", "energy": "Energy per standard hour",
               "maturity": "Maturity level", "stable-operation": "Years of stable operation"},
    figures: {oee: "OEE", availability: "Availability", effectiveness: "Performance", quality_ratio: "Quality",
              automation_rate: "Automation rate", defect_rate: "Defect rate",
              production_efficiency: "Production efficiency", energy_per_standard_hour_kwh: "Energy per standard hour",
              energy_per_unit_kwh: "Energy per unit", operating_cost: "Operating cost",
              production_efficiency_labour: "Labour productivity", carbon_per_standard_hour_kg: "Carbon per standard hour",
              carbon_per_unit_kg: "Carbon per unit", networking_rate: "Networking rate",
              cnc_rate_key_equipment: "CNC rate", history_years: "Years of history",
              maturity_level: "Maturity level", ai_scenario_share: "AI scenario share"},
    roles: {state: "state", mode: "mode", channel_mode: "channel mode", good_count: "good count",
            total_count: "total count", reject_count: "reject count", energy_kwh: "energy", analog: "analog",
            status: "status"},
    shifts: {early: "early shift", late: "late shift", night: "night shift"},
    states: {Executing: "Executing", NotExecuting: "Not executing", OutOfService: "Out of service",
             NotAvailable: "Not available"},
    modes: {None: "None", Processing: "Processing", Setup: "Setup", Maintenance: "Maintenance",
            Automatic: "Automatic", MDI: "MDI", Manual: "Manual"},
    deviceStates: {connected: "connected", connecting: "connecting", backoff: "waiting to retry",
                   stopped: "stopped", disabled: "disabled", unknown: "unknown"},
    qualities: {good: "good", uncertain: "uncertain", bad: "bad", "no data": "no data"},
  },
  "zh-CN": {
    window: "时间范围", last24h: "最近 24 小时", last7d: "最近 7 天", shift: "班次", language: "语言",
    apiDocs: "API 文档", overview: "工厂总览", tiersNav: "等级评估", plant: "工厂",
    hourlyOee: "OEE 及其构成", collectors: "采集器", device: "设备", protocol: "协议",
    state: "状态", lastSuccess: "最近成功", lastError: "最近错误",
    keyPrompt: "API 密钥（read 权限；用 `tierproof keys create --scope read` 创建）：",
    useKey: "使用密钥", oee: "OEE", availability: "可用率", effectiveness: "性能率",
    quality: "质量率", mode: "模式", updated: "更新于 {t}", windowText: "{from} → {to}",
    zone: "（工厂时间，{tz}）", stale: "数据过期", staleTitle: "没有新数据：设备未在上报",
    offShift: "非班次时间：当前没有计划生产时间。",
    unreachable: "自 {t} 起无法连接网关：以下数据来自最后一次应答。{s} 秒后重试。",
    slow: "网关响应缓慢：每 {s} 秒刷新一次。",
    refreshFailed: "刷新失败：{e}", lastSample: "采样 {t}", noData: "无数据", unknownState: "未知",
    loading: "加载中…", line: "产线", machine: "设备", machines: "设备", tag: "数据点",
    losses: "OEE 损失", lossHours: "小时", lossParts: "件数（按平均理想节拍）",
    counters: "产量与能耗", good: "合格品", scrap: "废品", energy: "能耗（千瓦时）",
    deltas: "基线与当前对比（95% 区间）", baseline: "基线", current: "当前",
    change: "变化", figure: "指标", timeline: "状态时间线", tags: "数据点", value: "数值",
    role: "类型", unit: "单位", time: "时间", gaps: "数据缺口", noGaps: "此时间范围内没有数据缺口。",
    from: "开始", to: "结束", reason: "原因", history: "历史", samples: "原始采样",
    quality_: "质量", next: "下一页", csv: "下载 CSV", count: "采样数",
    tier: "等级", verdict: "结论", criterion: "评估项", interval: "区间",
    threshold: "阈值", kind: "来源", coverage: "覆盖率", missing: "缺失 / 原因",
    evidence: "证据", evidencePack: "下载证据包", noPack: "此网关不提供证据包（{e}）。",
    counts: "达标 {met} 项，仅点估计 {pe} 项，数据不足 {ins} 项，未达标 {nm} 项",
    baselineWindow: "基线 {from} → {to}", assessedWindow: "评估 {from} → {to}",
    machinePage: "设备页面（缺口、覆盖率）", samplesOf: "采样：{r}", supplied: "{by} 于 {at} 提供：{src}",
    years: "年", pbt: "计划工作时间", apt: "实际生产时间",
    lossNames: {setup: "换型调整", malfunction: "故障", minorStops: "短暂停机", maintenance: "维护",
                notAvailable: "不可用", other: "其他", performance: "性能损失",
                quality: "质量损失", availabilityLoss: "可用率损失"},
    verdicts: {met: "达标", point_estimate_only: "仅点估计达标", not_met: "未达标",
               insufficient_data: "数据不足"},
    kinds: {measured: "实测", declared: "申报"},
    tiers: {basic: "基础级", advanced: "先进级", excellence: "卓越级", leading: "领航级"},
    criteria: {"networking": "设备联网并上报", "cnc-rate": "关键工序数控化率",
               "automation": "自动化率", "efficiency-gain": "生产效率较基线提升",
               "ai-scenarios": "人工智能应用场景", "cost-reduction": "运营成本较基线降低",
               "defect-reduction": "不良品率较基线降低", "energy": "单位标准工时能耗",
               "maturity": "成熟度等级", "stable-operation": "稳定运行年限"},
    figures: {oee: "OEE", availability: "可用率", effectiveness: "性能率", quality_ratio: "质量率",
              automation_rate: "自动化率", defect_rate: "不良品率",
              production_efficiency: "生产效率", energy_per_standard_hour_kwh: "单位标准工时能耗",
              energy_per_unit_kwh: "单位产品能耗", operating_cost: "运营成本",
              production_efficiency_labour: "劳动生产率", carbon_per_standard_hour_kg: "单位标准工时碳排放",
              carbon_per_unit_kg: "单位产品碳排放", networking_rate: "联网率",
              cnc_rate_key_equipment: "数控化率", history_years: "历史年限",
              maturity_level: "成熟度等级", ai_scenario_share: "人工智能场景占比"},
    roles: {state: "状态", mode: "模式", channel_mode: "通道模式", good_count: "合格计数",
            total_count: "总计数", reject_count: "废品计数", energy_kwh: "电能", analog: "模拟量",
            status: "状态信息"},
    shifts: {early: "早班", late: "中班", night: "夜班"},
    states: {Executing: "运行中", NotExecuting: "待机", OutOfService: "停用", NotAvailable: "不可用"},
    modes: {None: "无", Processing: "加工", Setup: "调整", Maintenance: "维护", Automatic: "自动",
            MDI: "MDI", Manual: "手动"},
    deviceStates: {connected: "已连接", connecting: "连接中", backoff: "等待重试", stopped: "已停止",
                   disabled: "已停用", unknown: "未知"},
    qualities: {good: "良好", uncertain: "不确定", bad: "差", "no data": "无数据"},
  },
};

const LANG_ITEM = "tierproof.lang";
export const I18N = {
  lang: (() => {
    try { const l = localStorage.getItem(LANG_ITEM); if (l && LABELS[l]) return l; } catch (e) { /* no storage */ }
    return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
  })(),
};
export function setLang(l) {
  I18N.lang = l;
  try { localStorage.setItem(LANG_ITEM, l); } catch (e) { /* this page only */ }
}
export function t(key, vars) {
  let s = LABELS[I18N.lang][key] ?? LABELS.en[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace("{" + k + "}", v);
  return s;
}
// a name of a group (states, modes, ...): the unknown name as it is, null as "unknown"
export const tr = (group, name) => name == null ? t("unknownState")
  : (LABELS[I18N.lang][group]?.[name] ?? LABELS.en[group]?.[name] ?? name);
export function applyLabels(root = document) {
  document.documentElement.lang = I18N.lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}
