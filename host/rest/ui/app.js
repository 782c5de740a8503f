'use strict';
// Eddy dashboard: a hash-routed single page that polls the REST API once a second.
// Plain ES2020, no build step: this file is embedded in the server binary as is.

const API = '/api/v1';
const TOKEN_KEY = 'eddy-token';
const POLL_MS = 1000;
const STATES = ['waiting', 'running', 'cancelling', 'restarting', 'finished', 'failed', 'cancelled'];
const ENDED = ['finished', 'failed', 'cancelled'];

// ---------------------------------------------------------------- formatting

const $ = (sel, root = document) => root.querySelector(sel);

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
// Everything coming from the server goes through esc(): job names, messages
// and paths are user-controlled and end up in innerHTML.
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);

const fmtTime = (ms) => (ms == null ? '—' : new Date(ms).toISOString());
const fmtRate = (n) => String(Math.round((Number(n) || 0) * 10) / 10);
const fmtPct = (r) => `${Math.round((Number(r) || 0) * 100)}%`;
const fmtCount = (n) => (Number(n) || 0).toLocaleString('en-US');
const fmtDuration = (ms) => (ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n) || 0;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

const pill = (state) => `<span class="pill ${esc(state)}">${esc(state)}</span>`;
const jobLink = (id) => `<a href="#/jobs/${esc(id)}">${esc(id)}</a>`;
const emptyRow = (cols, text) => `<tr class="empty"><td colspan="${cols}">${esc(text)}</td></tr>`;

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

async function api(path, { method = 'GET', json, body } = {}) {
  // An open cluster needs no token, so the header is only sent when one is set.
  const headers = {};
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(API + path, { method, headers, body });
  } catch (e) {
    throw new ApiError(0, `Cannot reach the server (${e.message}).`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON, e.g. a proxy error page */ }
  if (res.status === 401) {
    throw new ApiError(401, token
      ? 'The access token was rejected. Enter a valid token in the field above and press Save.'
      : 'This cluster requires an access token. Enter it in the field above and press Save.');
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || `${res.status} ${res.statusText}`);
  return data;
}

// request-id lets the server recognise a retried trigger. crypto.randomUUID
// only exists on secure origins, and the dashboard is often served over plain http.
function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function triggerSavepoint(jobId, stop) {
  const opts = { method: 'POST', json: { stop, 'request-id': randomId() } };
  try {
    return await api(`/jobs/${jobId}/savepoints`, opts);
  } catch (e) {
    if (e.status !== 0) throw e;
    // Lost connection: the answer may have been lost, not the request. Same request-id, so no duplicate.
    return api(`/jobs/${jobId}/savepoints`, opts);
  }
}

// ---------------------------------------------------------------- routing and polling

let current = { alive: false, timer: 0 };

function setStatus(text) {
  const el = $('#status');
  el.textContent = text;
  el.hidden = !text;
}

// Runs refresh now, then POLL_MS after each completion, so slow answers never pile up.
// A view stops polling as soon as it is no longer the current one.
function poll(ctx, refresh) {
  const tick = async () => {
    try {
      await refresh();
      if (ctx.alive) setStatus('');
    } catch (e) {
      if (ctx.alive) setStatus(e.message);
    }
    if (ctx.alive) ctx.timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

function route() {
  current.alive = false;
  clearTimeout(current.timer);
  const ctx = { alive: true, timer: 0 };
  current = ctx;
  setStatus('');

  const path = location.hash.replace(/^#/, '') || '/';
  const main = $('#view');
  const jobMatch = path.match(/^\/jobs\/(\d+)$/);
  let section = path;
  if (path === '/') overviewView(main, ctx);
  else if (path === '/jobs') jobsView(main, ctx);
  else if (jobMatch) { section = '/jobs'; jobView(main, ctx, jobMatch[1]); }
  else if (path === '/workers') workersView(main, ctx);
  else if (path === '/submit') submitView(main);
  else main.innerHTML = `<h2>Not found</h2><p>No page at <code>${esc(path)}</code>. <a href="#/">Back to the overview</a>.</p>`;

  for (const a of document.querySelectorAll('nav a[data-route]')) {
    a.classList.toggle('active', a.dataset.route === section);
  }
}

// ---------------------------------------------------------------- overview

function overviewView(main, ctx) {
  main.innerHTML = '<h2>Overview</h2><div class="cards" id="cards"></div><p class="muted" id="version"></p>';
  const cards = $('#cards', main);
  const card = (label, value, key) =>
    `<div class="card" data-card="${esc(key)}"><div class="card-label">${label}</div><div class="card-value">${esc(value)}</div></div>`;
  poll(ctx, async () => {
    const o = await api('/overview');
    const jobs = o.jobs || {};
    cards.innerHTML = [
      card('Workers', o.workers, 'workers'),
      card('Slots free / total', `${o['slots-free']} / ${o['slots-total']}`, 'slots'),
      ...STATES.map((s) => card(`Jobs ${pill(s)}`, jobs[s] || 0, s)),
    ].join('');
    $('#version', main).textContent = `Eddy ${o.version}`;
  });
}

// ---------------------------------------------------------------- jobs list

function jobsView(main, ctx) {
  main.innerHTML = `<h2>Jobs</h2>
    <table id="jobs"><thead><tr>
      <th>ID</th><th>Name</th><th>Tenant</th><th>State</th><th>Attempt</th><th>Restarts</th><th>Workers / reason</th>
    </tr></thead><tbody></tbody></table>`;
  const tbody = $('#jobs tbody', main);
  poll(ctx, async () => {
    const jobs = (await api('/jobs')).slice().sort((a, b) => b.id - a.id);
    tbody.innerHTML = jobs.length ? jobs.map((j) => `<tr data-job="${esc(j.id)}">
      <td>${jobLink(j.id)}</td><td>${esc(j.name)}</td><td>${esc(j.tenant)}</td>
      <td class="state">${pill(j.state)}</td><td>${esc(j.attempt)}</td><td>${esc(j.restarts)}</td>
      <td>${esc((j.workers || []).join(', '))}${j.reason ? `<div class="reason">${esc(j.reason)}</div>` : ''}</td>
    </tr>`).join('') : emptyRow(7, 'No jobs yet. Submit one from the Submit page.');
  });
}

// ---------------------------------------------------------------- job page

function jobView(main, ctx, id) {
  main.innerHTML = `
    <h2 id="job-title">Job ${esc(id)}</h2>
    <p class="job-head"><span id="job-state"></span></p>
    <dl class="meta" id="job-meta"></dl>
    <div class="actions">
      <button id="savepoint" type="button">Trigger savepoint</button>
      <button id="stop" type="button">Stop with savepoint</button>
      <button id="cancel" type="button" class="danger">Cancel</button>
    </div>
    <div id="message" hidden></div>
    <section>
      <h3>Graph</h3>
      <div class="graph-wrap"><svg id="graph" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Job graph"></svg></div>
      <table id="vertices"><thead><tr>
        <th>Vertex</th><th>Role</th><th>Parallelism</th><th>Records in</th><th>Records out</th>
        <th>In/s</th><th>Out/s</th><th>Busy</th><th>Backpressured</th><th>Watermark</th>
      </tr></thead><tbody></tbody></table>
    </section>
    <section>
      <h3>Savepoints</h3>
      <table id="savepoints"><thead><tr>
        <th>Trigger</th><th>Kind</th><th>State</th><th>Requested</th><th>Location / error</th>
      </tr></thead><tbody></tbody></table>
    </section>
    <section>
      <h3>Checkpoints</h3>
      <table id="checkpoints"><thead><tr>
        <th>ID</th><th>Kind</th><th>State</th><th>Size</th><th>Duration</th><th>Triggered</th>
      </tr></thead><tbody></tbody></table>
    </section>
    <section>
      <h3>Exceptions</h3>
      <table id="exceptions"><thead><tr>
        <th>Time</th><th>Attempt</th><th>Worker</th><th>Class</th><th>Message</th>
      </tr></thead><tbody></tbody></table>
    </section>`;

  const buttons = ['savepoint', 'stop', 'cancel'].map((b) => $(`#${b}`, main));
  const message = $('#message', main);
  let state = null;     // last known job state, to enable or disable the actions
  let inFlight = false; // one action at a time, so a double click does not send twice

  const syncButtons = () => {
    const disabled = inFlight || !state || ENDED.includes(state);
    for (const b of buttons) b.disabled = disabled;
  };
  const showMessage = (text, isError) => {
    message.textContent = text;
    message.className = isError ? 'error' : 'info';
    message.hidden = !text;
  };
  const act = async (run, describe) => {
    inFlight = true;
    syncButtons();
    try {
      showMessage(describe(await run()), false);
    } catch (e) {
      showMessage(e.message, true);
    } finally {
      inFlight = false;
      syncButtons();
    }
  };

  buttons[0].addEventListener('click', () =>
    act(() => triggerSavepoint(id, false), (r) => `Savepoint ${r.trigger} triggered.`));
  buttons[1].addEventListener('click', () =>
    act(() => triggerSavepoint(id, true), (r) => `Stop with savepoint ${r.trigger} triggered.`));
  buttons[2].addEventListener('click', () =>
    act(() => api(`/jobs/${id}/cancel`, { method: 'POST' }), (r) => `Job ${r.id} is ${r.state}.`));
  syncButtons();

  poll(ctx, async () => {
    const [job, savepoints, checkpoints, exceptions] = await Promise.all([
      api(`/jobs/${id}`),
      api(`/jobs/${id}/savepoints`),
      api(`/jobs/${id}/checkpoints`),
      api(`/jobs/${id}/exceptions`),
    ]);
    if (!ctx.alive) return;
    state = job.state;
    syncButtons();
    renderJobHead(main, job);
    const graph = job.graph || { vertices: [], edges: [] };
    renderGraph($('#graph', main), graph);
    renderVertices($('#vertices tbody', main), graph.vertices || []);
    renderSavepoints($('#savepoints tbody', main), savepoints);
    renderCheckpoints($('#checkpoints tbody', main), checkpoints);
    renderExceptions($('#exceptions tbody', main), exceptions);
  });
}

function renderJobHead(main, job) {
  $('#job-title', main).textContent = `${job.name} (job ${job.id})`;
  $('#job-state', main).innerHTML = pill(job.state) + (job.reason ? ` <span class="reason">${esc(job.reason)}</span>` : '');
  const meta = [
    ['Tenant', job.tenant],
    ['Attempt', job.attempt],
    ['Restarts', job.restarts],
    ['Slots', job.slots],
    ['Workers', (job.workers || []).join(', ') || '—'],
    ['Submitted', fmtTime(job['submitted-ms'])],
  ];
  if (job['stopped-with']) meta.push(['Stopped with', job['stopped-with']]);
  $('#job-meta', main).innerHTML = meta.map(([k, v]) => `<div><dt>${k}</dt><dd>${esc(v)}</dd></div>`).join('');
}

function renderVertices(tbody, vertices) {
  tbody.innerHTML = vertices.length ? vertices.map((v) => `<tr data-vertex="${esc(v.name)}">
    <td>${esc(v.name)}</td><td>${esc(v.role)}</td><td>${esc(v.parallelism)}</td>
    <td class="num">${fmtCount(v['records-in'])}</td><td class="num">${fmtCount(v['records-out'])}</td>
    <td class="num">${fmtRate(v['records-in-per-s'])}</td><td class="num">${fmtRate(v['records-out-per-s'])}</td>
    <td class="num">${fmtPct(v.busy)}</td><td class="num">${fmtPct(v.backpressured)}</td>
    <td class="watermark">${esc(fmtTime(v['watermark-ms']))}</td>
  </tr>`).join('') : emptyRow(10, 'The job has no vertices.');
}

function renderSavepoints(tbody, savepoints) {
  const rows = savepoints.slice().sort((a, b) => b['requested-ms'] - a['requested-ms']);
  tbody.innerHTML = rows.length ? rows.map((s) => `<tr data-trigger="${esc(s.trigger)}">
    <td><code>${esc(s.trigger)}</code></td><td>${s.stop ? 'stop' : 'savepoint'}</td>
    <td class="state">${pill(s.state)}</td><td>${esc(fmtTime(s['requested-ms']))}</td>
    <td>${s.error ? `<span class="error-text">${esc(s.error)}</span>` : `<code>${esc(s.location || '—')}</code>`}</td>
  </tr>`).join('') : emptyRow(5, 'No savepoints requested.');
}

function renderCheckpoints(tbody, checkpoints) {
  // The server lists the newest last; the newest is what people look for.
  const rows = checkpoints.slice().reverse();
  tbody.innerHTML = rows.length ? rows.map((c) => `<tr data-checkpoint="${esc(c.id)}">
    <td>${esc(c.id)}</td><td>${esc(c.kind)}</td><td class="state">${pill(c.state)}</td>
    <td class="num">${fmtBytes(c['size-bytes'])}</td><td class="num">${fmtDuration(c['duration-ms'])}</td>
    <td>${esc(fmtTime(c['trigger-ms']))}</td>
  </tr>`).join('') : emptyRow(6, 'No checkpoints yet.');
}

function renderExceptions(tbody, exceptions) {
  tbody.innerHTML = exceptions.length ? exceptions.map((x) => `<tr>
    <td>${esc(fmtTime(x['time-ms']))}</td><td>${esc(x.attempt)}</td><td>${esc(x.worker ?? '—')}</td>
    <td>${esc(x.class)}</td><td class="message"><div class="pre">${esc(x.message)}</div></td>
  </tr>`).join('') : emptyRow(5, 'No exceptions.');
}

// ---------------------------------------------------------------- job graph (SVG)

const NODE_W = 190;
const NODE_H = 86;
const GAP_X = 100;
const GAP_Y = 26;
const PAD = 16;
const LEGEND_H = 40;

const IDLE = [222, 229, 237];     // calm blue-grey
const BUSY = [214, 64, 58];       // red: the vertex itself is the bottleneck
const BACKPRESSURE = [138, 84, 190]; // purple: waiting on a slower vertex downstream

const mix = (a, b, t) => a.map((x, i) => Math.round(x + (b[i] - x) * t));
const clamp01 = (x) => Math.min(1, Math.max(0, Number(x) || 0));
const heat = (busy, bp) => mix(mix(IDLE, BUSY, clamp01(busy)), BACKPRESSURE, clamp01(bp));
const rgb = (c) => `rgb(${c.join(',')})`;
// Dark text on light fills, white text once the fill gets saturated.
const ink = (c) => ((0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) > 150 ? '#1d2430' : '#ffffff');
const clip = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

// Layers by longest path from the sources (Kahn's order), then each layer is
// sorted by the mean height of its predecessors to keep edge crossings down.
function layoutGraph(vertices, edges) {
  const names = vertices.map((v) => v.name);
  const preds = new Map(names.map((n) => [n, []]));
  const succs = new Map(names.map((n) => [n, []]));
  for (const e of edges) {
    if (preds.has(e.from) && preds.has(e.to)) { preds.get(e.to).push(e.from); succs.get(e.from).push(e.to); }
  }
  const indeg = new Map(names.map((n) => [n, preds.get(n).length]));
  const layer = new Map(names.map((n) => [n, 0]));
  const queue = names.filter((n) => indeg.get(n) === 0);
  while (queue.length) {
    const n = queue.shift();
    for (const s of succs.get(n)) {
      layer.set(s, Math.max(layer.get(s), layer.get(n) + 1));
      indeg.set(s, indeg.get(s) - 1);
      if (indeg.get(s) === 0) queue.push(s);
    }
  }
  const layers = [];
  for (const n of names) (layers[layer.get(n)] ||= []).push(n);
  const tallest = Math.max(0, ...layers.map((l) => (l ? l.length : 0)));

  const pos = new Map();
  layers.forEach((members = [], i) => {
    if (i > 0) {
      const center = (n) => {
        const ys = preds.get(n).filter((p) => pos.has(p)).map((p) => pos.get(p).y);
        return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : Infinity;
      };
      members.sort((a, b) => center(a) - center(b));
    }
    const offset = ((tallest - members.length) * (NODE_H + GAP_Y)) / 2;
    members.forEach((n, j) => pos.set(n, { x: PAD + i * (NODE_W + GAP_X), y: PAD + offset + j * (NODE_H + GAP_Y) }));
  });
  return {
    pos,
    width: PAD * 2 + layers.length * NODE_W + Math.max(0, layers.length - 1) * GAP_X,
    height: PAD * 2 + tallest * NODE_H + Math.max(0, tallest - 1) * GAP_Y,
  };
}

function renderGraph(svg, graph) {
  const vertices = graph.vertices || [];
  const edges = graph.edges || [];
  const { pos, width, height } = layoutGraph(vertices, edges);
  const w = Math.max(width, 560);
  const h = height + LEGEND_H;

  const edgeSvg = edges.filter((e) => pos.has(e.from) && pos.has(e.to)).map((e) => {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    const x1 = a.x + NODE_W; const y1 = a.y + NODE_H / 2;
    const x2 = b.x - 3; const y2 = b.y + NODE_H / 2;
    const mx = (x1 + x2) / 2;
    // For this symmetric cubic the curve's midpoint is exactly (mx, mean y): a good label spot.
    return `<g class="edge" data-from="${esc(e.from)}" data-to="${esc(e.to)}">
      <path d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}" class="${e.chained ? 'chained' : 'exchange'}" marker-end="url(#arrow)"/>
      <text class="edge-label" x="${mx}" y="${(y1 + y2) / 2 - 5}" text-anchor="middle">${esc(e.exchange)}</text>
    </g>`;
  }).join('');

  const vertexSvg = vertices.map((v) => {
    const p = pos.get(v.name);
    const rate = fmtRate(v.role === 'sink' ? v['records-in-per-s'] : v['records-out-per-s']);
    const fill = heat(v.busy, v.backpressured);
    const color = ink(fill);
    return `<g class="vertex" data-name="${esc(v.name)}" data-rate="${rate}" data-role="${esc(v.role)}" transform="translate(${p.x},${p.y})">
      <title>${esc(v.name)} (${esc(v.role)})</title>
      <rect width="${NODE_W}" height="${NODE_H}" rx="8" ry="8" fill="${rgb(fill)}"/>
      <g fill="${color}">
        <text x="12" y="22" class="v-name">${esc(clip(v.name, 24))}</text>
        <text x="${NODE_W - 12}" y="22" class="v-role" text-anchor="end">${esc(v.role)}</text>
        <text x="12" y="41">×${esc(v.parallelism)}</text>
        <text x="12" y="59">${rate} rec/s</text>
        <text x="12" y="77">busy ${fmtPct(v.busy)} · bp ${fmtPct(v.backpressured)}</text>
      </g>
    </g>`;
  }).join('');

  const ly = height + 12;
  const swatch = (x, c, label) =>
    `<rect x="${x}" y="${ly}" width="14" height="14" rx="3" fill="${rgb(c)}"/><text x="${x + 20}" y="${ly + 11}">${label}</text>`;
  const line = (x, cls, label) =>
    `<path d="M${x},${ly + 7} h28" class="${cls}"/><text x="${x + 34}" y="${ly + 11}">${label}</text>`;
  const legend = `<g class="legend">${swatch(PAD, IDLE, 'idle')}${swatch(PAD + 60, BUSY, 'busy')}${
    swatch(PAD + 120, BACKPRESSURE, 'backpressured')}${line(PAD + 250, 'chained', 'chained')}${
    line(PAD + 350, 'exchange', 'exchange')}</g>`;

  svg.setAttribute('width', w);
  svg.setAttribute('height', h);
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.innerHTML = `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">
      <path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>
    ${vertices.length ? '' : `<text x="${PAD}" y="${PAD + 20}" class="muted">No graph.</text>`}
    ${edgeSvg}${vertexSvg}${legend}`;
}

// ---------------------------------------------------------------- workers

function workersView(main, ctx) {
  main.innerHTML = `<h2>Workers</h2>
    <table id="workers"><thead><tr>
      <th>ID</th><th>Data address</th><th>Slots free / total</th><th>Jobs</th><th>Heartbeat</th><th>Pools</th>
    </tr></thead><tbody></tbody></table>`;
  const tbody = $('#workers tbody', main);
  poll(ctx, async () => {
    const workers = await api('/workers');
    tbody.innerHTML = workers.length ? workers.map((w) => {
      const age = w['heartbeat-ms-ago'];
      const pools = (w.pools || []).map((p) =>
        `<div class="pool">${esc(p.name)} ${fmtBytes(p.used)} / ${fmtBytes(p.capacity)}</div>`).join('');
      return `<tr data-worker="${esc(w.id)}">
        <td>${esc(w.id)}</td><td><code>${esc(w.data)}</code></td>
        <td>${esc(w['slots-free'])} / ${esc(w.slots)}</td>
        <td>${(w.jobs || []).map(jobLink).join(', ') || '—'}</td>
        <td class="${age > 5000 ? 'stale' : ''}">${age < 1000 ? `${age} ms` : `${(age / 1000).toFixed(1)} s`} ago</td>
        <td>${pools || '—'}</td>
      </tr>`;
    }).join('') : emptyRow(6, 'No workers registered.');
  });
}

// ---------------------------------------------------------------- submit

// Not polled: the form is rendered once, so nothing overwrites what the user picked.
function submitView(main) {
  main.innerHTML = `<h2>Submit a job</h2>
    <form id="submit">
      <label>Job definition (YAML)
        <input type="file" name="job" accept=".yaml,.yml" required></label>
      <label>Components (WASM, optional)
        <input type="file" name="component" multiple accept=".wasm"></label>
      <button type="submit">Submit</button>
    </form>
    <div id="submit-result" hidden></div>`;
  const form = $('#submit', main);
  const result = $('#submit-result', main);
  const show = (html, isError) => {
    result.innerHTML = html;
    result.className = isError ? 'error' : 'info';
    result.hidden = false;
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const job = form.elements.job.files[0];
    if (!job) { show('Choose a job YAML file.', true); return; }
    // Built by hand so the field names are exactly `job` and `component`, with each file's name kept.
    const data = new FormData();
    data.append('job', job, job.name);
    for (const f of form.elements.component.files) data.append('component', f, f.name);

    const button = $('button[type=submit]', form);
    button.disabled = true;
    try {
      const r = await api('/jobs', { method: 'POST', body: data });
      show(`Submitted job <a href="#/jobs/${esc(r.id)}">${esc(r.id)}</a>`, false);
    } catch (e) {
      show(esc(e.message), true);
    } finally {
      button.disabled = false;
    }
  });
}

// ---------------------------------------------------------------- start

function init() {
  const input = $('#token');
  input.value = getToken();
  const save = () => {
    const token = input.value.trim();
    try {
      if (token) localStorage.setItem(TOKEN_KEY, token);
      else localStorage.removeItem(TOKEN_KEY);
    } catch { /* storage disabled: the token cannot persist */ }
    route();
  };
  $('#token-save').addEventListener('click', save);
  input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') save(); });
  window.addEventListener('hashchange', route);
  route();
}

init();
