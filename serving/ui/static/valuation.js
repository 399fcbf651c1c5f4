// /ui: the form is built from the served model's rules (GET /model_rules), the valuation comes
// from POST /predict, and every part of the answer that came back is shown. A refused value
// shows the API's own 422 message beside the field it names.
"use strict";

const LABELS = {
  type: "Type", sector: "Sector", net_usable_area: "Usable area (m²)", net_area: "Total area (m²)",
  n_rooms: "Rooms", n_bathroom: "Bathrooms", latitude: "Latitude", longitude: "Longitude",
};
// The specification's example property: the form starts with it, so a first valuation is one click.
const EXAMPLE = {
  type: "casa", sector: "lo barnechea", net_usable_area: 300, net_area: 500, n_rooms: 6,
  n_bathroom: 5, latitude: -33.3561, longitude: -70.5072,
};
const MODEL_NAME_FALLBACK = "property_friends_best_model";
const OPTIONS = ["interval", "explain", "comparables"];

let rules = null;

function buildFields() {
  const container = document.getElementById("fields");
  container.replaceChildren();
  for (const name of rules.features) {
    const field = element("div", "field");
    const label = element("label", null, LABELS[name] || name);
    label.htmlFor = `feature-${name}`;
    let input;
    if (rules.choices[name]) {
      input = element("select");
      for (const choice of rules.choices[name]) {
        const option = element("option", null, choice);
        option.value = choice;
        input.appendChild(option);
      }
      if (rules.choices[name].includes(EXAMPLE[name])) input.value = EXAMPLE[name];
    } else {
      input = element("input");
      input.type = "number";
      input.step = "any";
      input.value = EXAMPLE[name];
    }
    input.id = `feature-${name}`;
    input.name = name;
    field.append(label, input);
    const bounds = rules.bounds[name];
    if (bounds) {
      const number = (value) => value.toLocaleString("en-US", { maximumFractionDigits: 6 });
      field.appendChild(element("small", "hint", `from ${number(bounds.min)} to ${number(bounds.max)}`));
    }
    const error = element("p", "field-error");
    error.id = `error-${name}`;
    error.setAttribute("role", "alert");
    field.appendChild(error);
    container.appendChild(field);
  }
}

function showOptions() {
  // Only what this proxy's /predict takes, and comparables only for a key that may have them.
  for (const option of OPTIONS) {
    let offered = rules.request_fields.includes(option);
    if (option === "comparables") offered = offered && rules.capabilities.includes("comparables");
    document.getElementById(`option-${option}`).hidden = !offered;
  }
  document.getElementById("options").hidden =
    OPTIONS.every((option) => document.getElementById(`option-${option}`).hidden);
}

async function loadRules() {
  const status = document.getElementById("rules-status");
  status.textContent = "Loading the served model's rules…";
  const answer = await callApi("/model_rules");
  if (answer.status !== 200) {
    status.textContent = `Cannot load the model's rules: ${errorText(answer)}`;
    status.classList.add("error");
    document.getElementById("valuation-form").hidden = true;
    return;
  }
  rules = answer.body;
  status.classList.remove("error");
  status.textContent = `Rules of ${rules.model_name} version ${rules.model_version}.`;
  buildFields();
  showOptions();
  document.getElementById("valuation-form").hidden = false;
}

function readRow() {
  const row = {};
  for (const name of rules.features) {
    const input = document.getElementById(`feature-${name}`);
    if (rules.choices[name]) row[name] = input.value;
    else row[name] = input.value.trim() === "" ? null : Number(input.value);
  }
  return row;
}

function requestBody(row) {
  const body = { model_name: rules.model_name || MODEL_NAME_FALLBACK, features: [row] };
  if (!document.getElementById("option-interval").hidden) {
    body.interval = Number(document.getElementById("interval").value);
  }
  if (!document.getElementById("option-explain").hidden) {
    body.explain = document.getElementById("explain").checked;
  }
  if (!document.getElementById("option-comparables").hidden) {
    body.comparables = Number(document.getElementById("comparables").value);
  }
  return body;
}

function clearErrors() {
  for (const node of document.querySelectorAll(".field-error")) node.textContent = "";
  for (const node of document.querySelectorAll(".field.invalid")) node.classList.remove("invalid");
  document.getElementById("form-error").textContent = "";
}

// A 422 lists {row, field, message}; `field` is a feature name, or a dotted path into the body
// ("features.0.net_area", "interval"). Each message goes beside the field it names.
function showErrors(answer) {
  const detail = answer.body && answer.body.detail;
  const general = [];
  if (answer.status === 422 && Array.isArray(detail)) {
    for (const problem of detail) {
      const name = problem.field ? String(problem.field).split(".").pop() : null;
      const target = name ? document.getElementById(`error-${name}`) : null;
      if (target) {
        target.textContent = target.textContent ? `${target.textContent}; ${problem.message}` : problem.message;
        target.parentElement.classList.add("invalid");
      } else {
        general.push(problem.field ? `${problem.field}: ${problem.message}` : problem.message);
      }
    }
  } else {
    general.push(errorText(answer));
  }
  document.getElementById("form-error").textContent = general.join("; ");
}

function showResult(row, body) {
  const missing = [];
  document.getElementById("price").textContent = formatUf(body.predictions[0]);
  let servedBy = `${body.model_name} version ${body.model_version}`;
  if (body.degraded) servedBy += ` (degraded: ${body.degraded_reason})`;
  document.getElementById("served-by").textContent = servedBy;

  const interval = body.intervals && body.intervals[0];
  document.getElementById("interval-section").hidden = !interval;
  if (interval) {
    document.getElementById("interval-text").textContent =
      `${Math.round(interval.level * 100)} % interval: ${formatUf(interval.lower)} to ${formatUf(interval.upper)}`;
    drawIntervalBar(document.getElementById("interval-bar"), body.predictions[0], interval);
  } else if ("interval" in requestBody(row)) {
    missing.push("interval");
  }

  const explanation = body.explanations && body.explanations[0];
  document.getElementById("explanation-section").hidden = !explanation;
  if (explanation) {
    document.getElementById("explanation-text").textContent =
      `Starting from ${formatUf(Math.exp(explanation.base))} (the model's base, ${explanation.space}), ` +
      "each part multiplies the price by the percentage shown.";
    drawExplanationChart(document.getElementById("explanation-chart"), explanation);
  } else if (requestBody(row).explain) {
    missing.push("explanation");
  }

  const comparables = (body.comparables && body.comparables[0]) || [];
  document.getElementById("comparables-section").hidden = comparables.length === 0;
  const rows = document.querySelector("#comparables-table tbody");
  rows.replaceChildren();
  comparables.forEach((c, index) => {
    const tr = element("tr");
    for (const value of [index + 1, c.type, c.sector, c.net_usable_area, c.net_area, c.n_rooms,
      c.n_bathroom, formatUf(c.price), Number(c.distance).toFixed(3)]) {
      tr.appendChild(element("td", null, value));
    }
    rows.appendChild(tr);
  });
  drawMap(document.getElementById("map"), row, comparables.filter(
    (c) => Number.isFinite(c.latitude) && Number.isFinite(c.longitude)));

  document.getElementById("missing-parts").textContent = missing.length
    ? `Asked for but not in the answer: ${missing.join(", ")}.` : "";
  document.getElementById("result").hidden = false;
}

async function value(event) {
  event.preventDefault();
  clearErrors();
  const button = document.getElementById("value-button");
  button.disabled = true;
  try {
    const row = readRow();
    const answer = await callApi("/predict", { method: "POST", body: requestBody(row) });
    if (answer.status === 200) showResult(row, answer.body);
    else showErrors(answer);
  } catch (error) {
    document.getElementById("form-error").textContent = `The proxy did not answer: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("valuation-form").addEventListener("submit", value);
  setUpKeyPanel(loadRules, () => {
    document.getElementById("valuation-form").hidden = true;
    document.getElementById("result").hidden = true;
    document.getElementById("rules-status").textContent = "Type a key to load the served model's rules.";
  });
});
