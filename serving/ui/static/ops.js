// /ui/ops: the registry (GET /models: served state, the shadow/canary traffic split, champion
// and challenger with their test metrics, alias history with the promotion gate's comparison), the latest monitoring run (GET /monitoring/latest: drift and live
// error) and the training queue (GET /jobs), for an admin key.
"use strict";

const JOBS_REFRESH_MS = 5000;
const SHOWN_METRICS = ["test_rmse", "test_mae", "test_mape", "test_r2", "test_medape"];
let jobsTimer = null;

function utc(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toISOString().replace("T", " ").slice(0, 19);
}

function fillVersion(alias, summary) {
  document.getElementById(`${alias}-version`).textContent = summary ? `version ${summary.version}` : "none";
  document.getElementById(`${alias}-about`).textContent = summary
    ? `registered ${utc(summary.created_at)} by ${summary.registered_by || "register"}; ` +
      `thresholds ${summary.validated === "true" ? "met" : summary.validated === "false" ? "NOT met" : "unknown"}`
    : "";
  const rows = document.querySelector(`#${alias}-metrics tbody`);
  rows.replaceChildren();
  if (!summary) return;
  const names = [...SHOWN_METRICS.filter((m) => m in summary.metrics),
    ...Object.keys(summary.metrics).filter((m) => !SHOWN_METRICS.includes(m)).sort()];
  for (const name of names) {
    const tr = element("tr");
    const value = summary.metrics[name];
    tr.append(element("th", null, name.replace(/^test_/, "")),
      element("td", "number", Math.abs(value) >= 100 ? Math.round(value).toLocaleString("en-US") : value.toPrecision(3)));
    rows.appendChild(tr);
  }
}

function percent(share) {
  return `${Math.round(Number(share) * 1000) / 10}%`;
}

function fillTraffic(traffic) {
  const line = document.getElementById("traffic-state");
  if (!traffic) {
    line.textContent = "Traffic split: not reported by this proxy.";
    return;
  }
  const origin = traffic.source === "runtime"
    ? `set at run time${traffic.set_by ? ` by ${traffic.set_by}` : ""}${traffic.set_at ? `, ${utc(traffic.set_at)}` : ""}`
    : "the config's default";
  const served = traffic.challenger_served_version
    ? ` Challenger served for it: version ${traffic.challenger_served_version}.` : "";
  line.textContent = `Traffic split: shadow ${percent(traffic.shadow)}, canary ` +
    `${percent(traffic.canary)} (${origin}).${served}`;
}

// A gated promotion's comparison (the alias history keeps it): rows, both figures, the margin.
function gateText(comparison) {
  if (!comparison) return "";
  return `${comparison.metric} ${figure(comparison.challenger_figure)} vs ` +
    `${figure(comparison.champion_figure)} on ${comparison.rows} rows (margin ${percent(comparison.margin)})`;
}

function fillHistory(history) {
  const rows = document.querySelector("#alias-history tbody");
  rows.replaceChildren();
  for (const move of [...history].reverse()) {
    const tr = element("tr");
    for (const value of [utc(move.at), move.alias, move.from_version || "none", move.to_version,
      move.reason, gateText(move.comparison), move.actor]) {
      tr.appendChild(element("td", null, value));
    }
    rows.appendChild(tr);
  }
}

async function loadModels() {
  const status = document.getElementById("ops-status");
  const answer = await callApi("/models");
  if (answer.status !== 200) {
    status.textContent = `Cannot read the registry: ${errorText(answer)}`;
    status.classList.add("error");
    document.getElementById("ops").hidden = true;
    return false;
  }
  const models = answer.body;
  status.classList.remove("error");
  status.textContent = `Registered model ${models.model_name}.`;
  const serving = models.serving || {};
  document.getElementById("serving-state").textContent =
    `Model servers: ${serving.state || "unknown"}${serving.detail ? ` (${serving.detail})` : ""}`;
  const versions = models.versions || {};
  fillVersion("champion", versions.champion);
  fillVersion("challenger", versions.challenger);
  fillTraffic(models.traffic);
  fillHistory(models.alias_history || []);
  document.getElementById("ops").hidden = false;
  return true;
}

// The statistic that decides drift for a feature (conf/drift.yaml): Jensen-Shannon for
// categories, normalized Wasserstein above 1,000 reference rows, else the KS p-value.
const DECIDING = ["jensenshannon", "wasserstein_normalized", "ks_pvalue"];

function figure(value) {
  if (value === null || value === undefined) return "n/a";
  return Math.abs(value) >= 100 ? Math.round(value).toLocaleString("en-US") : Number(value).toPrecision(3);
}

function fillMonitoring(latest) {
  const drifted = new Set(latest.drifted);
  document.getElementById("monitoring-about").textContent =
    `Version ${latest.model_version}, run ended ${utc(latest.at * 1000)}: ` +
    `${latest.window_rows.toLocaleString("en-US")} predictions in the window, ` +
    `${latest.feedback_rows.toLocaleString("en-US")} with an observed price. ` +
    (latest.drift_note ? `Drift not judged: ${latest.drift_note}` :
      `Drifted: ${latest.drifted.length ? latest.drifted.join(", ") : "none"}.`);
  const driftRows = document.querySelector("#drift tbody");
  driftRows.replaceChildren();
  const features = Object.entries(latest.features);
  if (Object.keys(latest.prediction).length) features.push(["predicted price", latest.prediction]);
  for (const [name, statistics] of features) {
    const statistic = DECIDING.find((s) => s in statistics) || Object.keys(statistics)[0] || "";
    const tr = element("tr");
    if (drifted.has(name)) tr.classList.add("drifted");
    tr.append(element("th", null, name), element("td", null, statistic),
      element("td", "number", figure(statistics[statistic])), element("td", "number", figure(statistics.psi)),
      element("td", null, drifted.has(name) ? "yes" : ""));
    driftRows.appendChild(tr);
  }
  document.getElementById("drift").hidden = features.length === 0;
  const errorRows = document.querySelector("#live-error tbody");
  errorRows.replaceChildren();
  for (const metric of Object.keys({...latest.test_error, ...latest.live_error})) {
    const tr = element("tr");
    tr.append(element("th", null, metric), element("td", "number", figure(latest.live_error[metric])),
      element("td", "number", figure(latest.test_error[metric])));
    errorRows.appendChild(tr);
  }
  document.getElementById("live-error").hidden = errorRows.children.length === 0;
}

async function loadMonitoring() {
  const status = document.getElementById("monitoring-status");
  const panel = document.getElementById("monitoring");
  const answer = await callApi("/monitoring/latest");
  status.classList.toggle("error", answer.status !== 200);
  if (answer.status !== 200) {
    panel.hidden = true;
    status.textContent = `Cannot read the monitoring figures: ${errorText(answer)}`;
    return;
  }
  const retrainings = Object.entries(answer.body.retraining_triggered);
  status.textContent = `${answer.body.note ? `${answer.body.note}. ` : ""}Retrainings triggered by ` +
    `monitoring: ${retrainings.length
      ? retrainings.map(([reason, count]) => `${count} (${reason})`).join(", ") : "none"}.`;
  if (answer.body.latest) fillMonitoring(answer.body.latest);
  panel.hidden = !answer.body.latest;
}

function progressCell(job) {
  const cell = element("td");
  const progress = job.progress;
  if (!progress) return cell;
  const bar = element("progress");
  bar.max = 1;
  bar.value = Math.max(0, Math.min(1, Number(progress.fraction) || 0));
  cell.append(bar, element("span", "hint", ` ${progress.step}${progress.message ? `: ${progress.message}` : ""}`));
  return cell;
}

async function loadJobs() {
  const status = document.getElementById("jobs-status");
  const answer = await callApi("/jobs?limit=20");
  if (answer.status !== 200) {
    status.textContent = `Cannot list the jobs: ${errorText(answer)}`;
    status.classList.add("error");
    return;
  }
  status.classList.remove("error");
  status.textContent = `Queue ${answer.body.queue}: ${answer.body.jobs.length} recent job(s).`;
  const rows = document.querySelector("#jobs tbody");
  rows.replaceChildren();
  for (const job of answer.body.jobs) {
    const tr = element("tr");
    tr.dataset.status = job.status;
    tr.append(element("td", "mono", job.job_id.slice(0, 8)), element("td", null, job.description),
      element("td", `job-${job.status}`, job.status), progressCell(job),
      element("td", null, utc(job.enqueued_at)), element("td", null, job.version || ""),
      element("td", "error", job.error || ""));
    rows.appendChild(tr);
  }
}

function stopPolling() {
  if (jobsTimer !== null) clearInterval(jobsTimer);
  jobsTimer = null;
}

function forget() {
  stopPolling();
  document.getElementById("ops").hidden = true;
}

async function load() {
  stopPolling();
  if (!(await loadModels())) return;
  await loadMonitoring();
  await loadJobs();
  jobsTimer = setInterval(loadJobs, JOBS_REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => setUpKeyPanel(load, forget));
