// Experiments dashboard: reads /api/experiments with the admin token and draws the results with Chart.js.
"use strict";

const TOKEN_KEY = "pixelcast-admin-token";
const COLORS = ["#5b9cff", "#3ecf8e", "#f5b942", "#ff6b6b", "#c678dd", "#56b6c2"];
const charts = {};

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function say(text) {
  document.getElementById("message").textContent = text || "";
}

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function pct(x) {
  return x === null || x === undefined ? "–" : `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)}%`;
}

function num(x, digits = 3) {
  return x === null || x === undefined ? "–" : Number(x).toPrecision(digits);
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

async function loadList(selectKey) {
  const { experiments } = await api("/api/experiments");
  const body = document.querySelector("#experiments tbody");
  body.replaceChildren();
  for (const e of experiments) {
    const row = document.createElement("tr");
    row.dataset.key = e.key;
    cell(row, e.key);
    cell(row, e.status);
    cell(row, e.mode + (e.sequential ? " (sequential)" : ""));
    cell(row, e.variations.map((v) => `${v.id}: ${v.policy}`).join(", "));
    cell(row, new Date(e.created_at * 1000).toLocaleString());
    row.addEventListener("click", () => show(e.key));
    body.appendChild(row);
  }
  document.getElementById("main").hidden = false;
  const wanted = selectKey || (experiments.length ? experiments[experiments.length - 1].key : null);
  if (wanted) await show(wanted);
  else say("No experiments yet: define one with POST /api/experiments.");
}

function winnerText(results) {
  const [primary] = Object.keys(results.metrics);
  if (!primary) return null;
  const rows = results.metrics[primary].variations.slice(1);
  const best = rows.filter((r) => r.verdict === "better").sort((a, b) => Math.abs(b.lift) - Math.abs(a.lift))[0];
  if (!best) return null;
  const evidence = best.p_value !== undefined ? `p = ${num(best.p_value, 2)}` : `chance to win ${num(best.chance_to_win, 3)}`;
  return { variation: best.variation, text: `Winner: ${best.variation} on ${primary} (${pct(best.lift)}, ${evidence})` };
}

async function show(key) {
  say("");
  for (const row of document.querySelectorAll("#experiments tbody tr")) {
    row.setAttribute("aria-selected", String(row.dataset.key === key));
  }
  const results = await api(`/api/experiments/${encodeURIComponent(key)}/results`);
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent =
    `${key} — ${results.status}, ${results.exposures} viewers, ${results.mode}`;
  const winner = winnerText(results);
  const banner = document.getElementById("winner");
  banner.textContent = winner ? winner.text : "No winner yet: no variation beats control on the primary metric.";
  banner.dataset.verdict = winner ? "winner" : "none";
  banner.dataset.variation = winner ? winner.variation : "";
  const srm = document.getElementById("srm");
  srm.dataset.warning = String(results.srm.warning);
  srm.textContent = results.srm.warning
    ? `⚠ ${results.srm.message}`
    : `Sample ratio check passed (p = ${num(results.srm.p_value, 3)}).`;

  const arms = document.querySelector("#arms tbody");
  arms.replaceChildren();
  for (const v of results.variations) {
    const row = document.createElement("tr");
    cell(row, v.id);
    cell(row, v.policy);
    cell(row, Object.entries(v.settings || {}).map(([k, x]) => `${k}=${x}`).join(", ") || "–");
    cell(row, v.weight);
    cell(row, v.n);
    arms.appendChild(row);
  }

  const metrics = document.querySelector("#metrics tbody");
  metrics.replaceChildren();
  for (const [name, metric] of Object.entries(results.metrics)) {
    const control = metric.variations[0];
    for (const r of metric.variations.slice(1)) {
      const row = document.createElement("tr");
      cell(row, name);
      cell(row, metric.goal);
      cell(row, r.variation);
      cell(row, num(r.mean));
      cell(row, num(control.mean));
      cell(row, pct(r.lift));
      cell(row, r.ci ? `[${pct(r.ci[0])}, ${pct(r.ci[1])}]` : "–");
      const p = r.p_value !== undefined
        ? `p = ${num(r.p_value, 2)}` + (r.p_value_adjusted !== undefined ? ` (Holm ${num(r.p_value_adjusted, 2)})` : "")
        : `${num(r.chance_to_win, 3)} (risk ${num(r.risk && r.risk[1], 2)})`;
      cell(row, p);
      cell(row, r.cuped ? `${pct(r.cuped.lift)} [${pct(r.cuped.ci[0])}, ${pct(r.cuped.ci[1])}]` : "–");
      cell(row, r.verdict, r.verdict);
      metrics.appendChild(row);
    }
  }
  drawIntervals(results);
  drawCumulative(results);
}

function drawIntervals(results) {
  const labels = [];
  const bars = [];
  const points = [];
  const colors = [];
  for (const [name, metric] of Object.entries(results.metrics)) {
    metric.variations.slice(1).forEach((r, i) => {
      if (!r.ci || r.lift === null) return;
      labels.push(`${name} · ${r.variation}`);
      bars.push([100 * r.ci[0], 100 * r.ci[1]]);
      points.push(100 * r.lift);
      colors.push(r.verdict === "better" ? "#3ecf8e" : r.verdict === "worse" ? "#ff6b6b" : COLORS[i % COLORS.length]);
    });
  }
  charts.interval?.destroy();
  charts.interval = new Chart(document.getElementById("interval-chart"), {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: "interval (%)", data: bars, backgroundColor: colors.map((c) => c + "88"), borderColor: colors,
          borderWidth: 1, barPercentage: 0.5 },
        { type: "scatter", label: "lift (%)", data: points.map((x, i) => ({ x, y: labels[i] })), pointRadius: 5,
          backgroundColor: "#ffffff" },
      ],
    },
    options: {
      indexAxis: "y", animation: false, responsive: true, maintainAspectRatio: false,
      scales: { x: { title: { display: true, text: "lift against control (%)" }, grid: { color: "#262b36" } },
                y: { type: "category", grid: { color: "#262b36" } } },
      plugins: { legend: { labels: { color: "#e6e8ee" } } },
    },
  });
}

function drawCumulative(results) {
  const [primary] = Object.keys(results.metrics);
  const variations = results.variations.slice(1).map((v) => v.id);
  const datasets = [];
  variations.forEach((id, i) => {
    const color = COLORS[(i + 1) % COLORS.length];
    const snaps = results.snapshots.filter((s) => s.metrics[primary] && s.metrics[primary][id] &&
      s.metrics[primary][id].lift !== null && s.metrics[primary][id].ci);
    const xy = (f) => snaps.map((s) => ({ x: s.exposures, y: 100 * f(s.metrics[primary][id]) }));
    datasets.push({ label: `${id} lift`, data: xy((m) => m.lift), borderColor: color, backgroundColor: color });
    datasets.push({ label: `${id} upper`, data: xy((m) => m.ci[1]), borderColor: color + "44", pointRadius: 0,
      fill: false });
    datasets.push({ label: `${id} lower`, data: xy((m) => m.ci[0]), borderColor: color + "44", pointRadius: 0,
      backgroundColor: color + "22", fill: "-1" });
  });
  document.getElementById("cumulative-caption").textContent = `Cumulative lift over exposures: ${primary}`;
  charts.cumulative?.destroy();
  charts.cumulative = new Chart(document.getElementById("cumulative-chart"), {
    type: "line",
    data: { datasets },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, parsing: true,
      scales: { x: { type: "linear", title: { display: true, text: "exposures" }, grid: { color: "#262b36" } },
                y: { title: { display: true, text: "lift (%)" }, grid: { color: "#262b36" } } },
      plugins: { legend: { labels: { color: "#e6e8ee", filter: (item) => item.text.endsWith("lift") } } },
    },
  });
}

async function open(selectKey) {
  try {
    await loadList(selectKey);
  } catch (error) {
    document.getElementById("main").hidden = true;
    say(`Cannot read experiments: ${error.message}`);
  }
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  open();
});

// `/dashboard#token=...&experiment=...` opens directly (the fragment never reaches the server's logs)
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
  history.replaceState(null, "", location.pathname);
}
if (token()) open(fragment.get("experiment") || undefined);
else say("Paste the admin token (printed once at the server's first start, or $PIXELCAST_ADMIN_TOKEN).");
