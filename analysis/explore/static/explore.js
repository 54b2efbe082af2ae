// rpgan explore: the page. Talks to its own server only (server.py lists the API).
"use strict";

const $ = (id) => document.getElementById(id);
let model = null;       // GET /api/model
let current = null;     // the state shown: {path, z, coefficients, noise}
let history = [];       // states visited; `at` is the one shown
let at = -1;
let selected = 0;       // the bucket the arrow keys move in (an index into the path: bucket selected + 1)
let randomIndex = 0;    // the next random state of the server's --seed
let pending = null;     // the request in flight: a newer one supersedes it

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(url, options) {
  const response = await fetch(url, options);
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new Error(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
  return body;
}

function query(state) {
  const q = new URLSearchParams({path: state.path.join(",")});
  if (model.gaussian && state.z !== null) q.set("z", state.z);
  if (model.mode === "eigen" && state.coefficients) q.set("coefficients", state.coefficients.join(","));
  if (model.mode === "noise") q.set("noise", state.noise);
  return q.toString();
}

// Ask for a state's view; `push`: record it in the history (back/forward do not).
async function go(url, push = true) {
  const mine = pending = Symbol();
  let view;
  try {
    view = await api(url);
  } catch (e) {
    if (mine === pending) showError(e.message);
    return;
  }
  if (mine !== pending) return;  // a later click won
  showError("");
  current = view.state;
  if (push) {
    history = history.slice(0, at + 1);
    history.push(current);
    at = history.length - 1;
  }
  render(view);
}

function goState(state, push = true) {
  return go(`/api/view?${query(state)}`, push);
}

function render(view) {
  $("image").src = view.image;
  $("path").value = view.state.path_text;
  $("sample-command").textContent = model.mode === "eigen" ? "" :
    `rpgan sample --ckpt ${model.checkpoint} --path ${view.state.path_text}`;
  location.hash = query(view.state);
  $("back").disabled = at <= 0;
  $("forward").disabled = at >= history.length - 1;
  const rows = $("rows");
  rows.replaceChildren();
  view.rows.forEach((row) => {
    const index = row.bucket - 1;  // buckets are numbered 1..n, as everywhere a person reads them
    const box = document.createElement("div");
    box.className = "row" + (index === selected ? " selected" : "");
    box.dataset.bucket = row.bucket;
    const title = document.createElement("h2");
    title.textContent = row.label;
    const strip = document.createElement("div");
    strip.className = "strip" + (row.clickable ? " clickable" : "");
    row.items.forEach((item) => {
      const img = document.createElement("img");
      img.src = item.image;
      if (row.clickable) {
        img.dataset.block = item.block;
        img.alt = img.title = `bucket ${row.bucket}, block ${item.block}`;
        if (item.block === view.state.path[index]) img.classList.add("current");
        img.addEventListener("click", () => swap(index, item.block));
      } else {
        img.alt = img.title = `${row.label}, draw ${item.draw}`;
      }
      strip.append(img);
    });
    box.append(title, strip);
    rows.append(box);
  });
  if (model.mode === "eigen") fillSliders(view.state.coefficients);
  if (model.mode === "noise") {
    $("noise").value = view.state.noise;
    $("noise-value").textContent = view.state.noise;
  }
}

function swap(bucket, block) {
  selected = bucket;
  const path = current.path.slice();
  path[bucket] = block;
  goState({...current, path});
}

function random() {
  go(`/api/random?index=${randomIndex++}`);
}

function resample() {
  // the next z seed; an EigenGAN's coefficients follow the new z
  goState({...current, z: current.z + 1, coefficients: null});
}

function fillSliders(values) {
  const box = $("sliders");
  const dims = model.eigen_dims;
  if (box.childElementCount === 0) {
    for (let layer = 0; layer < model.blocks.length; layer++) {
      const head = document.createElement("div");
      head.className = "layer";
      head.textContent = `layer ${layer + 1}: z_${layer + 1}`;
      box.append(head);
      for (let d = 0; d < dims; d++) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        Object.assign(input, {type: "range", min: -model.coefficient_range, max: model.coefficient_range, step: 0.05});
        input.dataset.index = layer * dims + d;
        const shown = document.createElement("span");
        input.addEventListener("input", () => { shown.textContent = Number(input.value).toFixed(2); });
        input.addEventListener("change", () => {
          const coefficients = current.coefficients.slice();
          coefficients[Number(input.dataset.index)] = Number(input.value);
          goState({...current, coefficients});
        });
        label.append(`dim ${d + 1}`, input, shown);
        box.append(label);
      }
    }
  }
  box.querySelectorAll("input").forEach((input) => {
    const v = values[Number(input.dataset.index)];
    input.value = v;
    input.nextSibling.textContent = v.toFixed(2);
  });
}

function step(delta) {  // back / forward through the states visited
  const to = at + delta;
  if (to < 0 || to >= history.length) return;
  at = to;
  goState(history[at], false);
}

function moveBlock(delta) {
  if (model.mode !== "paths") return;
  const m = model.blocks[selected];
  swap(selected, (current.path[selected] + delta + m) % m);
}

function selectBucket(delta) {
  selected = Math.min(Math.max(selected + delta, 0), model.blocks.length - 1);
  document.querySelectorAll(".row").forEach((row) =>
    row.classList.toggle("selected", Number(row.dataset.bucket) - 1 === selected));
}

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" && event.target.type === "range") return;
  const keys = {ArrowUp: () => selectBucket(-1), ArrowDown: () => selectBucket(1),
    ArrowLeft: () => moveBlock(-1), ArrowRight: () => moveBlock(1),
    r: random, z: () => model.gaussian && resample(), b: () => step(-1), f: () => step(1)};
  const action = keys[event.key];
  if (action && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    action();
  }
});

function showModel() {
  const m = model;
  $("model").textContent = `${m.preset || m.arch} · ${m.data} · step ${m.step} · ` +
    `${m.mode === "paths" ? `blocks ${m.blocks.join("×")}` : m.mode === "noise" ? "standard GAN: noise injection" :
      `EigenGAN, ${m.eigen_dims} dims per layer`} · ${m.checkpoint}`;
  $("resample").hidden = !m.gaussian;
  $("noise-control").hidden = m.mode !== "noise";
  $("noise").max = m.max_noise;
  $("sliders").hidden = m.mode !== "eigen";
  $("path-line").hidden = m.mode === "eigen";
  showResults(m.results);
}

function showResults(results) {
  const box = $("results");
  box.replaceChildren();
  results.forEach((r) => {
    const title = document.createElement("h2");
    title.textContent = `${r.title} (${r.command}${r.jobs > 1 ? `: the latest of ${r.jobs} jobs` : ""})`;
    box.append(title);
    if (r.plot) {
      const img = document.createElement("img");
      img.alt = r.title;
      img.src = `/api/results/${r.plot}?t=${Date.now()}`;
      img.addEventListener("error", async () => {  // deleted since: the server says why
        try { await api(img.src); } catch (e) { showError(e.message); }
        img.remove();
      });
      box.append(img);
    }
    if (r.error) {
      const p = document.createElement("p");
      p.className = "hint";
      p.textContent = r.error;
      box.append(p);
    }
    if (r.table) box.append(table(r.table));
  });
}

function table(t) {
  const el = document.createElement("table");
  const head = el.createTHead().insertRow();
  t.columns.forEach((c) => { const th = document.createElement("th"); th.textContent = c; head.append(th); });
  const body = el.createTBody();
  t.rows.forEach((r) => { const tr = body.insertRow(); r.forEach((v) => { tr.insertCell().textContent = v; }); });
  return el;
}

async function reload() {
  try {
    model = await api("/api/reload", {method: "POST"});
  } catch (e) {
    showError(e.message);
    return;
  }
  showModel();
  $("sliders").replaceChildren();
  goState(current, false);
}

$("back").addEventListener("click", () => step(-1));
$("forward").addEventListener("click", () => step(1));
$("random").addEventListener("click", random);
$("resample").addEventListener("click", resample);
$("reload").addEventListener("click", reload);
$("copy").addEventListener("click", () => {
  $("path").select();
  if (navigator.clipboard) navigator.clipboard.writeText($("path").value).catch(() => {});
});
$("noise").addEventListener("change", () => goState({...current, noise: Number($("noise").value)}));

async function start() {
  try {
    model = await api("/api/model");
  } catch (e) {
    showError(e.message);
    return;
  }
  showModel();
  const asked = new URLSearchParams(location.hash.slice(1));
  if (asked.has("path")) {  // a shared link: the state it names
    go(`/api/view?${asked.toString()}`);
  } else {
    random();
  }
}

start();
