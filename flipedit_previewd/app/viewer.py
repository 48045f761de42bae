"""A page to look at: the current frame with a scrubber, the timeline's clips, health and the last events.

"Why is my preview black" is answered faster by seeing the frame, the clips and the last
journal events than by reading JSON. The page is self-contained (no external asset, no
framework fetched at run time), read-only (it only GETs what any local program may GET), and
served with a strict Content-Security-Policy: its script and style come from this daemon only,
nothing inline, no eval, no frames, no forms. ``access.py`` lets the page's own same-origin
GETs through; a page from any other origin still gets 403.
"""

from __future__ import annotations

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
]

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>flipedit-previewd</title>
<link rel="stylesheet" href="/viewer.css">
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<script src="/viewer.js" defer></script>
</head>
<body>
<header><h1>flipedit-previewd</h1><span id="status" class="badge">…</span><span id="version"></span></header>
<main>
<section class="stage">
  <img id="frame" alt="the timeline's frame">
  <div class="controls">
    <button id="play" type="button" aria-label="play">▶</button>
    <input id="scrub" type="range" min="0" max="0" value="0" aria-label="frame">
    <span id="position">frame 0</span>
  </div>
  <div id="tracks" class="tracks" aria-label="clips on the timeline"></div>
  <p id="frameinfo" class="muted"></p>
</section>
<aside>
  <h2>Health</h2><dl id="health"></dl>
  <h2>Media problems</h2><ul id="problems"><li class="muted">none</li></ul>
  <h2>Last events</h2><ol id="events"></ol>
</aside>
</main>
</body>
</html>
"""

ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#4a6fa5"/>'
    '<path d="M6 4l6 4-6 4z" fill="#fff"/></svg>'
)

CSS = """
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #16161a; color: #e8e8ea; }
header { display: flex; gap: 1em; align-items: center; padding: .5em 1em; background: #222228; }
h1 { font-size: 1.1em; margin: 0; } h2 { font-size: 1em; margin: 1em 0 .3em; }
main { display: flex; gap: 1em; padding: 1em; flex-wrap: wrap; }
.stage { flex: 3 1 640px; min-width: 0; } aside { flex: 1 1 260px; min-width: 0; overflow-wrap: anywhere; }
main { flex-wrap: nowrap; } @media (max-width: 900px) { main { flex-wrap: wrap; } }
#frame { width: 100%; max-width: 1280px; height: min(62vh, 56vw); background: #000; display: block; object-fit: contain; }
.controls { display: flex; gap: .6em; align-items: center; margin: .5em 0; }
#scrub { flex: 1; } button { font-size: 1em; min-width: 2.5em; }
.tracks { position: relative; background: #222228; min-height: 1.2em; }
.track { position: relative; height: 1.2em; border-bottom: 1px solid #16161a; }
.clip { position: absolute; top: 1px; bottom: 1px; background: #4a6fa5; border-radius: 2px; overflow: hidden;
        font-size: 11px; white-space: nowrap; padding-left: 3px; color: #fff; }
.clip.image { background: #5f8f5a; } .playhead { position: absolute; top: 0; bottom: 0; width: 2px; background: #f55; }
.badge { padding: 0 .5em; border-radius: 3px; background: #555; } .badge.ok { background: #2d7a3a; }
.badge.degraded, .badge.busy { background: #a67c00; } .badge.down { background: #a33; }
dl { display: grid; grid-template-columns: auto 1fr; gap: .1em .8em; margin: 0; } dt { color: #aab; }
ol, ul { padding-left: 1.2em; margin: 0; font-size: 12px; } .muted { color: #889; }
.warning, .err { color: #f9c74f; }
"""  # noqa: E501 (the text of another language, kept as written)

JS = r"""
'use strict';
const $ = (id) => document.getElementById(id);
const state = { total: 1, fps: 30, frame: 0, timer: null, loading: false, wanted: null, revision: '' };

async function getJSON(path) {
  const answer = await fetch(path, { cache: 'no-store' });
  if (!answer.ok) throw new Error(path + ' answered ' + answer.status);
  return answer.json();
}

function text(tag, value, cls) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (cls) node.className = cls;
  return node;
}

function show(frame) {
  frame = Math.max(0, Math.min(state.total - 1, frame | 0));
  state.frame = frame;
  $('scrub').value = String(frame);
  $('position').textContent = 'frame ' + frame + ' / ' + (state.total - 1) + '  ' + (frame / state.fps).toFixed(2) + ' s';
  const head = document.querySelector('.playhead');
  if (head) head.style.left = (100 * frame / Math.max(1, state.total)) + '%';
  if (state.loading) { state.wanted = frame; return; }   // one frame in flight: the newest wish follows it
  state.loading = true;
  const img = $('frame');
  const started = performance.now();
  img.onload = img.onerror = (event) => {
    state.loading = false;
    $('frameinfo').textContent = event.type === 'load'
      ? 'frame ' + frame + ' in ' + Math.round(performance.now() - started) + ' ms'
      : 'frame ' + frame + ' could not be loaded';
    if (state.wanted !== null && state.wanted !== frame) { const next = state.wanted; state.wanted = null; show(next); }
    else state.wanted = null;
  };
  const width = Math.min(1280, Math.max(320, Math.round(img.clientWidth * (window.devicePixelRatio || 1))));
  img.src = '/get_frame/' + frame + '?width=' + width + '&revision=' + encodeURIComponent(state.revision);
}

function drawTracks(timeline) {
  const box = $('tracks');
  box.replaceChildren();
  const total = Math.max(1, timeline.total_frames);
  const byTrack = new Map();
  for (const clip of timeline.clips || []) {
    if (!byTrack.has(clip.track_id)) byTrack.set(clip.track_id, []);
    byTrack.get(clip.track_id).push(clip);
  }
  for (const clips of byTrack.values()) {
    const row = text('div', '', 'track');
    for (const clip of clips) {
      const startFrame = clip.track_time_ms.start * timeline.frame_rate / 1000;
      const endFrame = clip.track_time_ms.end * timeline.frame_rate / 1000;
      const bar = text('div', (clip.source_path || '').split('/').pop(), 'clip ' + (clip.type || ''));
      bar.style.left = (100 * startFrame / total) + '%';
      bar.style.width = Math.max(0.3, 100 * (endFrame - startFrame) / total) + '%';
      bar.title = clip.source_path;
      row.append(bar);
    }
    box.append(row);
  }
  if (!byTrack.size) box.append(text('div', 'no clips in the timeline', 'muted'));
  box.append(text('div', '', 'playhead'));
}

async function refreshTimeline() {
  const timeline = await getJSON('/debug/timeline');
  state.total = Math.max(1, timeline.total_frames);
  state.fps = timeline.frame_rate || 30;
  $('scrub').max = String(state.total - 1);
  drawTracks(timeline);
  state.revision = timeline.revision || '';
  return timeline.revision;
}

async function refreshHealth() {
  let health;
  try { health = await getJSON('/health'); } catch (error) {
    $('status').textContent = 'unreachable'; $('status').className = 'badge down'; return null;
  }
  $('status').textContent = health.status; $('status').className = 'badge ' + health.status;
  $('version').textContent = 'version ' + health.version + ', pid ' + health.pid;
  const latency = health.latency_ms || {};
  const ahead = health.render_ahead || {};
  const rows = [
    ['queue', health.queue_size + ' / ' + health.queue_capacity],
    ['workers', (health.workers || []).map((w) => w.state).join(', ')],
    ['latency', 'p50 ' + latency.p50 + ' ms, p95 ' + latency.p95 + ' ms'],
    ['connections', health.connections + ' / ' + health.max_connections],
    ['cache', (health.cache || {}).frames + ' frames'],
    ['render-ahead', ahead.enabled ? (ahead.rendered + ' rendered, ' + ahead.queued + ' queued, ' + ahead.running + ' running') : 'off'],
    ['project', ((health.project || {}).path || '(none)') + ' (' + (health.project || {}).state + ')'],
  ];
  const list = $('health');
  list.replaceChildren();
  for (const [name, value] of rows) list.append(text('dt', name), text('dd', String(value)));
  const problems = $('problems');
  problems.replaceChildren();
  for (const problem of health.media_problems || []) problems.append(text('li', problem.path + ': ' + problem.problem, 'warning'));
  if (!problems.children.length) problems.append(text('li', 'none', 'muted'));
  return health.project ? health.project.revision : null;
}

async function refreshEvents() {
  const answer = await getJSON('/debug/events');
  const list = $('events');
  list.replaceChildren();
  for (const event of (answer.events || []).slice(-15).reverse()) {
    list.append(text('li', new Date(event.time * 1000).toLocaleTimeString() + ' ' + event.event + ': ' + event.message, event.priority));
  }
}

function togglePlay() {
  if (state.timer) { clearInterval(state.timer); state.timer = null; $('play').textContent = '▶'; return; }
  $('play').textContent = '❚❚';
  state.timer = setInterval(() => show(state.frame + 1 >= state.total ? 0 : state.frame + 1), 1000 / state.fps);
}

async function start() {
  $('scrub').addEventListener('input', (event) => show(Number(event.target.value)));
  $('play').addEventListener('click', togglePlay);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowRight') show(state.frame + 1);
    if (event.key === 'ArrowLeft') show(state.frame - 1);
    if (event.key === ' ') { event.preventDefault(); togglePlay(); }
  });
  let revision = await refreshTimeline().catch(() => null);
  show(0);
  await refreshHealth();
  await refreshEvents().catch(() => {});
  setInterval(async () => {
    const now = await refreshHealth();
    if (now !== null && now !== revision) { revision = await refreshTimeline().catch(() => revision); show(state.frame); }
    refreshEvents().catch(() => {});
  }, 2000);
}

start();
"""  # noqa: E501 (the text of another language, kept as written)
