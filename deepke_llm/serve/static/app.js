// deepke-llm web page: calls the REST API only (/v1/schemas, /v1/extract, /v1/jobs).
"use strict";

const $ = (id) => document.getElementById(id);
const EXAMPLES = {
  en: {
    ner: ["conll03", "Barack Obama met Angela Merkel in Berlin to talk about NATO."],
    re: ["conll04", "Barack Obama lives in Washington and works for the White House."],
    ee: ["ace05", "Troops fired on protesters in Baghdad on Monday, killing three people."],
  },
  zh: {
    ner: ["msra", "习近平在北京会见了法国总统马克龙。"],
    re: ["duie", "《红楼梦》的作者是曹雪芹，成书于清代。"],
    ee: ["duee", "3月5日，华为公司宣布裁员500人。"],
  },
};
const COLOURS = { person: "#aa9cfc", location: "#ff9561", organization: "#7aecec",
  else: "#bfeeb7", other: "#bfeeb7", misc: "#bfeeb7", "人物": "#aa9cfc",
  "地理位置": "#ff9561", "组织机构": "#7aecec" };

let schemas = [];
let current = null; // the selected bundled schema (its JSON)
let typesEdited = false;
let lastDocuments = [];

function colour(type) {
  if (COLOURS[type]) return COLOURS[type];
  let hash = 0;
  for (const ch of type) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360}, 70%, 78%)`;
}

function headers(json) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const isJson = (response.headers.get("content-type") || "").includes("json");
  const body = isJson ? await response.json() : await response.text();
  if (!response.ok) throw new Error((body && body.error) || `HTTP ${response.status}`);
  return body;
}

function say(id, message, error = false) {
  $(id).textContent = message;
  $(id).classList.toggle("error", error);
}

// ---- schemas and types --------------------------------------------------------------------
async function loadSchemas() {
  try {
    schemas = (await api("/v1/schemas", { headers: headers() })).schemas;
  } catch (err) {
    say("status", `cannot list schemas: ${err.message}`, true);
    return;
  }
  fillSchemaPicker();
}

function fillSchemaPicker(wanted) {
  const task = $("task").value;
  const picker = $("schema");
  const previous = wanted || picker.value;
  picker.replaceChildren();
  for (const s of schemas.filter((s) => s.tasks.includes(task))) {
    picker.add(new Option(`${s.name} (${s.language})`, s.name));
  }
  if ([...picker.options].some((o) => o.value === previous)) picker.value = previous;
  return selectSchema();
}

async function selectSchema() {
  const name = $("schema").value;
  if (!name) return;
  current = await api(`/v1/schemas/${encodeURIComponent(name)}`, { headers: headers() });
  typesEdited = false;
  showTypes();
}

function showTypes() {
  const task = $("task").value;
  const lines = [];
  if (task === "ner") (current.entity_types || []).forEach((t) => lines.push(t.name));
  if (task === "re") (current.relation_types || []).forEach((t) => lines.push(t.name));
  if (task === "ee") (current.event_types || []).forEach((t) =>
    lines.push(`${t.name}: ${t.roles.map((r) => r.name).join(", ")}`));
  $("types").value = lines.join("\n");
  $("types-hint").textContent = task === "ee"
    ? "One event type per line: 'type: role, role'. Editing them sends an inline schema."
    : "One type per line. Editing them sends an inline schema.";
  $("types-mode").textContent = "(from the schema)";
}

function inlineSchema() {
  const task = $("task").value;
  const lines = $("types").value.split("\n").map((l) => l.trim()).filter(Boolean);
  const schema = { name: "inline", language: current ? current.language : "en" };
  if (task === "ner") schema.entity_types = lines.map((name) => ({ name }));
  if (task === "re") schema.relation_types = lines.map((name) => ({ name }));
  if (task === "ee") {
    schema.event_types = lines.map((line) => {
      const [name, roles = ""] = line.split(/:(.*)/s);
      return { name: name.trim(), roles: roles.split(/[,，]/).map((r) => r.trim())
        .filter(Boolean).map((r) => ({ name: r })) };
    });
  }
  return schema;
}

function requestOptions() {
  return { task: $("task").value, prompt_style: $("prompt-style").value,
    schema: typesEdited ? inlineSchema() : $("schema").value };
}

// ---- extraction ---------------------------------------------------------------------------
async function run() {
  const text = $("text").value;
  if (!text.trim()) { say("status", "type or paste a text first", true); return; }
  $("run").disabled = true;
  say("status", "extracting…");
  const started = performance.now();
  try {
    const body = await api("/v1/extract", { method: "POST", headers: headers(true),
      body: JSON.stringify({ ...requestOptions(), text }) });
    lastDocuments = body.documents;
    render(body.documents[0]);
    say("status", `done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (err) {
    say("status", err.message, true);
  } finally {
    $("run").disabled = false;
  }
}

function spansOf(doc) {
  const spans = [];
  const add = (m, type) => spans.push({ start: m.start, end: m.end, text: m.text, type });
  (doc.entities || []).forEach((e) => add(e, e.type));
  (doc.relations || []).forEach((r) => { add(r.head, r.head.type || "head"); add(r.tail, r.tail.type || "tail"); });
  (doc.events || []).forEach((ev) => {
    add(ev.trigger, ev.type);
    (ev.arguments || []).forEach((a) => add(a, a.role));
  });
  return spans;
}

function render(doc) {
  $("results").hidden = false;
  $("raw").textContent = JSON.stringify(doc, null, 1);
  const spans = spansOf(doc);
  const placed = spans.filter((s) => s.start !== null && s.start !== undefined)
    .sort((a, b) => a.start - b.start || b.end - a.end);
  const seen = new Set();
  const box = $("doc");
  box.replaceChildren();
  let at = 0;
  for (const span of placed) {
    if (span.start < at || seen.has(`${span.start}:${span.end}`)) continue; // overlaps: first wins
    seen.add(`${span.start}:${span.end}`);
    box.append(document.createTextNode(doc.text.slice(at, span.start)));
    const mark = document.createElement("mark");
    mark.className = "ent";
    mark.dataset.type = span.type;
    mark.style.setProperty("--c", colour(span.type));
    const label = document.createElement("span");
    label.textContent = span.type;
    mark.append(document.createTextNode(doc.text.slice(span.start, span.end)), label);
    box.append(mark);
    at = span.end;
  }
  box.append(document.createTextNode(doc.text.slice(at)));
  const unfound = spans.filter((s) => s.start === null || s.start === undefined);
  $("unfound").hidden = !unfound.length;
  $("unfound").textContent = unfound.length
    ? `Not found in the text: ${unfound.map((s) => `${s.text} (${s.type})`).join(", ")}` : "";
  renderRelations(doc.relations || []);
  renderEvents(doc.events || []);
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  td.className = cls;
  return td;
}

function renderRelations(relations) {
  $("relations-view").hidden = !relations.length;
  const body = $("relations").tBodies[0];
  body.replaceChildren();
  for (const r of relations) {
    const row = document.createElement("tr");
    row.append(cell(r.head.text, "head"), cell(r.type, "rel"), cell(r.tail.text, "tail"));
    body.append(row);
  }
  drawGraph(relations);
}

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// entities on one line, each relation an arc from head to tail with its type at the top
function drawGraph(relations) {
  const graph = $("graph");
  graph.replaceChildren();
  if (!relations.length) return;
  const nodes = [];
  const index = new Map();
  const node = (m) => {
    const key = `${m.text}|${m.start}`;
    if (!index.has(key)) { index.set(key, nodes.length); nodes.push(m); }
    return index.get(key);
  };
  const arcs = relations.map((r) => [node(r.head), node(r.tail), r.type]);
  const widths = nodes.map((m) => 16 + 8 * [...m.text].length);
  const xs = [];
  let x = 10;
  widths.forEach((w) => { xs.push(x); x += w + 40; });
  const height = 60 + 34 * Math.min(arcs.length, 6);
  const base = height - 30;
  graph.setAttribute("viewBox", `0 0 ${Math.max(x, 300)} ${height}`);
  graph.setAttribute("height", height);
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#555" }));
  defs.append(marker);
  graph.append(defs);
  arcs.forEach(([h, t, type], i) => {
    const x1 = xs[h] + widths[h] / 2;
    const x2 = xs[t] + widths[t] / 2;
    const top = base - 40 - 28 * (i % 6);
    graph.append(svg("path", { class: "arc", d: `M${x1},${base} C${x1},${top} ${x2},${top} ${x2},${base}`,
      "marker-end": "url(#arrow)" }));
    graph.append(svg("text", { x: (x1 + x2) / 2, y: top + 16, "text-anchor": "middle" }, type));
  });
  nodes.forEach((m, i) => {
    const g = svg("g", { class: "node" });
    g.append(svg("rect", { x: xs[i], y: base, width: widths[i], height: 24, rx: 5,
      fill: colour(m.type || "") }));
    g.append(svg("text", { x: xs[i] + widths[i] / 2, y: base + 16, "text-anchor": "middle" }, m.text));
    graph.append(g);
  });
}

function renderEvents(events) {
  $("events-view").hidden = !events.length;
  const box = $("events");
  box.replaceChildren();
  for (const ev of events) {
    const frame = document.createElement("div");
    frame.className = "frame";
    frame.style.setProperty("--c", colour(ev.type));
    const title = document.createElement("div");
    title.className = "frame-type";
    title.textContent = ev.type;
    const trigger = document.createElement("div");
    trigger.className = "trigger";
    trigger.textContent = `trigger: ${ev.trigger.text}`;
    const list = document.createElement("ul");
    for (const a of ev.arguments || []) {
      const item = document.createElement("li");
      item.textContent = `${a.role}: ${a.text}`;
      list.append(item);
    }
    frame.append(title, trigger, list);
    box.append(frame);
  }
}

function download(name, text, type) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// ---- batch jobs ---------------------------------------------------------------------------
async function runJob() {
  const file = $("job-file").files[0];
  if (!file) { say("job-status", "choose a JSONL file first", true); return; }
  const options = requestOptions();
  const form = new FormData();
  form.append("file", file);
  form.append("task", options.task);
  form.append("prompt_style", options.prompt_style);
  form.append("schema", typeof options.schema === "string" ? options.schema : JSON.stringify(options.schema));
  $("job-download").hidden = true;
  $("job-progress").value = 0;
  try {
    let job = await api("/v1/jobs", { method: "POST", headers: headers(), body: form });
    while (job.state === "queued" || job.state === "running") {
      say("job-status", `${job.state}: ${job.documents_done} of ${job.documents_total} documents`);
      $("job-progress").value = job.progress;
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = await api(`/v1/jobs/${job.id}`, { headers: headers() });
    }
    $("job-progress").value = job.progress;
    if (job.state === "failed") throw new Error(job.error || "the job failed");
    say("job-status", `done: ${job.documents_done} documents, ${job.records} records` +
      (job.input_errors ? `, ${job.input_errors} bad lines skipped` : "") +
      (job.failed ? `, ${job.failed} failed` : ""));
    const response = await fetch(`/v1/jobs/${job.id}/records`, { headers: headers() });
    const link = $("job-download");
    link.href = URL.createObjectURL(await response.blob());
    link.download = `${job.filename.replace(/\.jsonl$/, "")}.records.jsonl`;
    link.hidden = false;
  } catch (err) {
    say("job-status", err.message, true);
  }
}

// ---- wiring -------------------------------------------------------------------------------
function example(language) {
  const [schema, text] = EXAMPLES[language][$("task").value];
  $("text").value = text;
  return fillSchemaPicker(schema);
}

$("task").addEventListener("change", () => fillSchemaPicker());
$("schema").addEventListener("change", selectSchema);
$("types").addEventListener("input", () => { typesEdited = true; $("types-mode").textContent = "(inline schema)"; });
$("types-reset").addEventListener("click", () => { typesEdited = false; showTypes(); });
$("run").addEventListener("click", run);
$("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
$("example-en").addEventListener("click", () => example("en"));
$("example-zh").addEventListener("click", () => example("zh"));
$("download-jsonl").addEventListener("click", () => download("records.jsonl",
  lastDocuments.map((d) => JSON.stringify(d)).join("\n") + "\n", "application/x-ndjson"));
$("download-json").addEventListener("click", () => download("records.json",
  JSON.stringify(lastDocuments, null, 1), "application/json"));
$("job-run").addEventListener("click", runJob);
$("api-key").addEventListener("change", loadSchemas);
api("/version").then((v) => { $("version").textContent = `v${v.version} · ${v.engine} · ${v.model}`; }).catch(() => {});
loadSchemas();
