// The playground: plain JavaScript against this server's own Judge0 API
// (no build step, nothing from a CDN). It submits with base64 (through
// playground/submissions, which asks the worker to stream the output),
// then polls the submission, showing each status and the output streamed
// so far as they arrive, then the verdict.
"use strict";

const $ = (id) => document.getElementById(id);
let hellos = {};

function b64encode(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}
function b64decode(b64) {
  if (b64 == null) return "";
  const bin = atob(b64.replace(/\s/g, ""));
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

function unreachable(why) {
  $("unreachable-why").textContent = why;
  $("unreachable").hidden = false;
  $("api-state").textContent = "API unreachable";
}
function reachable() {
  $("unreachable").hidden = true;
}

async function api(path, options) {
  let resp;
  try {
    resp = await fetch(path, options);
  } catch (e) {
    unreachable(String(e.message || e));
    throw e;
  }
  reachable();
  const body = await resp.text();
  let json = null;
  try { json = body ? JSON.parse(body) : null; } catch (_) { /* not JSON */ }
  return { status: resp.status, json, body };
}

async function loadLanguages() {
  try {
    const r = await api("playground/languages");
    if (r.status !== 200 || !Array.isArray(r.json)) {
      unreachable("GET /playground/languages answered " + r.status);
      return;
    }
    const sel = $("language");
    sel.innerHTML = "";
    for (const l of r.json) {
      hellos[l.id] = l.hello;
      const o = document.createElement("option");
      o.value = l.id;
      o.textContent = l.name;
      sel.appendChild(o);
    }
    sel.value = r.json.some((l) => l.id === 71) ? "71" : String(r.json[0].id);
    $("code").value = hellos[sel.value] || "";
    $("run").disabled = false;
    $("api-state").textContent = r.json.length + " languages";
  } catch (_) { /* shown */ }
}

function addStatus(text) {
  const li = document.createElement("li");
  li.textContent = text;
  $("statuses").appendChild(li);
}

function show(sub) {
  for (const f of ["stdout", "stderr", "compile_output"]) {
    $(f).textContent = b64decode(sub[f]);
  }
  const v = $("verdict");
  v.textContent = sub.status.description;
  v.className = "verdict " + (sub.status.id === 3 ? "ok" : "bad");
  const m = $("measures");
  m.innerHTML = "";
  const rows = [["time", sub.time == null ? "–" : sub.time + " s"], ["wall time", sub.wall_time == null ? "–" : sub.wall_time + " s"],
    ["memory", sub.memory == null ? "–" : sub.memory + " KB"], ["exit code", sub.exit_code ?? "–"],
    ["signal", sub.exit_signal ?? "–"], ["message", b64decode(sub.message) || "–"]];
  for (const [k, val] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = val;
    m.append(dt, dd);
  }
}

async function run() {
  $("run").disabled = true;
  $("statuses").innerHTML = "";
  for (const id of ["verdict", "stdout", "stderr", "compile_output", "measures"]) $(id).textContent = "";
  try {
    const r = await api("playground/submissions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ language_id: Number($("language").value), source_code: b64encode($("code").value), stdin: b64encode($("stdin").value) }),
    });
    if (r.status !== 201) {
      $("verdict").textContent = "refused (" + r.status + "): " + r.body;
      $("verdict").className = "verdict bad";
      return;
    }
    const token = r.json.token;
    addStatus("submitted: " + token);
    let last = 0, seq = 0;
    for (let i = 0; i < 1200; i++) {
      const g = await api("submissions/" + token + "?base64_encoded=true&fields=*");
      if (g.status !== 200) { addStatus("GET answered " + g.status); return; }
      const s = g.json.status;
      if (s.id !== last) { addStatus(s.description); last = s.id; }
      if (s.id >= 3) { show(g.json); return; }
      const o = await api("playground/output/" + token);
      if (o.status === 200 && o.json.seq > seq) {
        if (seq === 0) addStatus("output streaming");
        seq = o.json.seq;
        $("stdout").textContent = o.json.stdout;
        $("stderr").textContent = o.json.stderr;
      }
      await new Promise((ok) => setTimeout(ok, 150));
    }
    addStatus("gave up waiting");
  } catch (_) { /* shown */ } finally {
    $("run").disabled = false;
  }
}

$("language").addEventListener("change", () => { $("code").value = hellos[$("language").value] || ""; });
$("run").addEventListener("click", run);
loadLanguages();
