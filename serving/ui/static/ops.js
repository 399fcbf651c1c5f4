// /ui/ops: the registry (GET /models: served state, champion and challenger with their test
// metrics, alias history) and the training queue (GET /jobs), for an admin key.
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

function fillHistory(history) {
  const rows = document.querySelector("#alias-history tbody");
  rows.replaceChildren();
  for (const move of [...history].reverse()) {
    const tr = element("tr");
    for (const value of [utc(move.at), move.alias, move.from_version || "none", move.to_version,
      move.reason, move.actor]) {
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
  fillHistory(models.alias_history || []);
  document.getElementById("ops").hidden = false;
  return true;
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
  await loadJobs();
  jobsTimer = setInterval(loadJobs, JOBS_REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => setUpKeyPanel(load, forget));
