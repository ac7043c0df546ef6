"""What runs in the browser: the page's look (CSS, theme) and its JavaScript.

Everything here only helps the listener; the server enforces every rule again. The page needs no
Python of its own beyond the public API (``app/ui.py``): every UI-only reaction — the listening
gate, locking the vote buttons, showing clip slots, the model's notes, the rater id, a random
prompt — is JavaScript, so no hidden server function exists for anyone to call.

The listening gate (``arena_js``) adds capture-phase listeners for the arena's two ``<audio>``
elements and sums the time actually played (``timeupdate`` steps under one second; seeks are not
counted). The vote buttons stay disabled until each clip has played ``min(gate, its length)``
seconds; a vote sends the measured seconds, at most each clip's length however often it was
replayed (the server refuses more).
"""

from __future__ import annotations

import json

import gradio as gr

MAX_STEER_SLIDERS = 4  # objective sliders on the page (a CLP model with more: the API weighs the rest)


def theme() -> gr.themes.Base:
    """The default look with system fonts: the page fetches nothing from other hosts."""
    system = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
    return gr.themes.Default(font=system, font_mono=["ui-monospace", "Consolas", "monospace"])


CSS = """
#arena-gate-status { font-weight: 600; padding: 6px 10px; border-radius: 6px;
                     background: var(--block-background-fill); }
#vote-row button { min-height: 52px; font-size: 1.05em; }
#vote-row button:disabled { opacity: 0.45; cursor: not-allowed; }
#clip-info, #arena-reveal { min-height: 1.5em; }
.spectrogram img { image-rendering: pixelated; width: 100% !important; max-width: none !important;
                   object-fit: fill !important; }
.spectrogram .image-container, .spectrogram .image-frame, .spectrogram button { width: 100% !important; }
#clip-slots[data-n="1"] .clip-slot-2, #clip-slots[data-n="1"] .clip-slot-3, #clip-slots[data-n="1"] .clip-slot-4,
#clip-slots[data-n="2"] .clip-slot-3, #clip-slots[data-n="2"] .clip-slot-4,
#clip-slots[data-n="3"] .clip-slot-4 { display: none !important; }
body:not([data-merge="true"]) #lam-slider { display: none !important; }
body:not([data-steer]) .steer-slider, body[data-steer="0"] .steer-slider,
body[data-steer="1"] #steer-2, body[data-steer="1"] #steer-3, body[data-steer="1"] #steer-4,
body[data-steer="2"] #steer-3, body[data-steer="2"] #steer-4,
body[data-steer="3"] #steer-4 { display: none !important; }
body:not([data-best-of="true"]) #best-of-row { display: none !important; }
body[data-cfg-free="true"] #cfg-slider { display: none !important; }
#leaderboard-table table { table-layout: auto; width: 100%; }
#leaderboard-table td, #leaderboard-table th, #leaderboard-table td *, #leaderboard-table th * {
  white-space: nowrap !important; overflow-wrap: normal !important; word-break: normal !important; }
#leaderboard-table td:nth-child(2), #leaderboard-table th:nth-child(2),
#leaderboard-table td:nth-child(2) *, #leaderboard-table th:nth-child(2) * {
  white-space: normal !important; overflow-wrap: anywhere !important; }
@media (max-width: 600px) {
  #leaderboard-table td, #leaderboard-table th { padding: 4px 3px !important; font-size: 0.8em; }
}
"""


# On a model change: its notes and merge weight as values; the CFG, quality/diversity, objective and
# best-of controls shown or hidden through attributes on <body> (CSS above); the objective sliders named
# after the model's objectives and set to equal weights; the duration slider's maximum set to the model's.
# ``table`` (the hidden models JSON, refreshed by the ``models`` event on load): model id -> {name, notes,
# cfg_free, merge, merge_init, max_duration, steer (objective names), best_of (usable rewards)}.
MODEL_JS = """
(table, model, duration) => {
  const info = (table || {})[model] || {notes: "", cfg_free: false, merge: false, merge_init: 0.5, max_duration: 30};
  const steer = info.steer || [];
  document.body.dataset.cfgFree = String(info.cfg_free);
  document.body.dataset.merge = String(info.merge);
  document.body.dataset.steer = String(Math.min(steer.length, __SLIDERS__));
  document.body.dataset.bestOf = String((info.best_of || []).length > 0);
  steer.slice(0, __SLIDERS__).forEach((name, i) => {
    const label = document.querySelector(`#steer-${i + 1} [data-testid="block-info"]`);
    if (label) label.textContent = `Weight of ${name}`;
  });
  document.querySelectorAll('#duration-slider input').forEach((el) => el.max = String(info.max_duration));
  return [info.notes, info.merge_init, Math.min(Number(duration) || 0, info.max_duration),
          ...Array(__SLIDERS__).fill(1)];
}
""".replace("__SLIDERS__", str(MAX_STEER_SLIDERS))

# The objective weights the generate event sends: {objective: slider value} for a steerable model (objectives
# past the page's sliders weigh 1), {} for any other model.
STEER_JS = """
(table, model, ...values) => {
  const steer = (((table || {})[model]) || {}).steer || [];
  if (!steer.length) return [{}];
  const weights = {};
  steer.forEach((name, i) => { weights[name] = i < values.length ? Number(values[i]) : 1; });
  return [weights];
}
"""


SLOTS_JS = """
(n) => {
  const slots = document.getElementById('clip-slots');
  if (slots) slots.dataset.n = String(Math.max(1, Math.min(4, Math.round(Number(n) || 1))));
  return [];
}
"""

GENERATE_START_JS = """
(...args) => {
  const button = document.getElementById('generate-button');
  if (button) { button.disabled = true; button.setAttribute('aria-busy', 'true'); }
  if (window.musicrlLive) window.musicrlLive.begin();  // in the click: the browser lets audio start from here
  return args;
}
"""

# The live player: pieces of clip 1 (``app.ui.live_payload``: start sample, rate, base64 16-bit PCM) arrive in
# the hidden ``live`` JSON while the clip is sampled and are scheduled back to back on one Web Audio context,
# created (or resumed) in the Generate click so that no autoplay rule holds it back. ``first`` is when the
# first sample reaches the output (performance.now() clock: scheduled time plus the context's output latency);
# ``gaps`` counts pieces that did not follow the last one (none is expected: the server sends every piece, in
# order); ``underruns`` the pieces that came after the previous one had finished playing (sampling slower than
# real time leaves silences). Playing any other clip on the page stops the live one; so does the checkbox.
LIVE_INIT_JS = """
() => {
  if (window.musicrlLive) return [];
  const live = window.musicrlLive = {ctx: null, sources: [], on: false, next: 0, expected: 0, first: null,
                                     clicked: null, played: 0, gaps: 0, underruns: 0};
  const say = (text) => { const el = document.getElementById('live-status'); if (el) el.textContent = text; };
  live.stop = () => { live.sources.forEach((s) => { try { s.stop(); } catch (e) {} }); live.sources = []; };
  live.begin = () => {
    live.stop();
    Object.assign(live, {next: 0, expected: 0, first: null, clicked: performance.now(), played: 0, gaps: 0,
                         underruns: 0});
    const box = document.querySelector('#live-play input');
    const Context = window.AudioContext || window.webkitAudioContext;
    live.on = Boolean(Context) && (!box || box.checked);
    if (!live.on) return say('');
    live.ctx = live.ctx || new Context({latencyHint: 'interactive'});
    live.ctx.resume();
    say('Clip 1 will play here while it is made.');
  };
  live.play = (piece) => {
    if (!piece || !live.on || !live.ctx || typeof piece.pcm16 !== 'string') return;
    if (piece.start !== live.expected) live.gaps += 1;
    const bytes = Uint8Array.from(atob(piece.pcm16), (c) => c.charCodeAt(0));
    const ints = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
    const buffer = live.ctx.createBuffer(1, Math.max(1, ints.length), piece.rate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < ints.length; i++) data[i] = ints[i] / 32768;
    const source = live.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(live.ctx.destination);
    const now = live.ctx.currentTime, when = Math.max(live.next, now + 0.02);
    if (live.next && when > live.next) live.underruns += 1;  // the last piece ran out before this one came
    source.start(when);
    live.sources.push(source);
    live.next = when + buffer.duration;
    live.expected = piece.start + ints.length;
    live.played += buffer.duration;
    if (live.first === null) {
      live.first = performance.now() + (when - now + (live.ctx.outputLatency || live.ctx.baseLatency || 0)) * 1000;
    }
    say(`Playing clip 1 while it is made: ${live.played.toFixed(1)} s so far.`);
  };
  const quiet = () => { live.stop(); say(''); };
  document.addEventListener('play', (e) => { if (e.target.tagName === 'AUDIO') quiet(); }, true);
  document.addEventListener('change', (e) => {
    if (e.target.closest && e.target.closest('#live-play') && !e.target.checked) { live.on = false; quiet(); }
  }, true);
  return [];
}
"""

LIVE_JS = """
(piece) => { if (window.musicrlLive) window.musicrlLive.play(piece); return []; }
"""

GENERATE_END_JS = """
() => {
  const button = document.getElementById('generate-button');
  if (button) { button.disabled = false; button.removeAttribute('aria-busy'); }
  return [];
}
"""

CLIP_INFO_JS = """
(meta) => {
  const clips = (meta && meta.clips) || [];
  if (!clips.length) return [""];
  const seeds = clips.map((c) => c.seed).join(", ");
  let text = `${clips.length} clip(s) from **${meta.model}**, ${clips[0].duration} s each, seed(s) ${seeds}. `;
  if (meta.weights) text += 'Objective weights: '
    + Object.entries(meta.weights).map(([k, v]) => `${k} ${Number(v).toFixed(2)}`).join(', ') + '. ';
  if (meta.best_of) {
    const f = (v) => v === null || v === undefined ? 'n/a' : Number(v).toFixed(3);
    const kept = clips.map((c, i) => `clip ${i + 1}: candidate ${c.params.best_of.chosen + 1}, `
      + `reward ${f(c.params.best_of.reward_value)}`).join('; ');
    text += `Best of ${meta.best_of.n} by ${meta.best_of.reward} (${kept}); cost: ${meta.best_of.candidates} `
      + `candidates in ${Number(meta.best_of.seconds).toFixed(1)} s. `;
  }
  return [text + "Play them below; the download button saves the WAV."];
}
"""

RATER_JS = """
() => {
  const KEY = 'musicrl-rater-id';
  let id = null;
  try { id = localStorage.getItem(KEY); } catch (e) {}
  if (!id || !/^r-[0-9a-f]{16}$/.test(id)) {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    id = 'r-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    try { localStorage.setItem(KEY, id); } catch (e) {}
  }
  return [id];
}
"""


def random_prompt_js(bank: tuple[str, ...]) -> str:
    return f"() => {{ const B = {_js_literal(list(bank))}; return [B[Math.floor(Math.random() * B.length)]]; }}"


def _js_literal(value: object) -> str:
    """JSON as a JavaScript literal that cannot close an enclosing <script> element."""
    return json.dumps(value).replace("</", "<\\/")


def arena_js(gate_s: float) -> str:
    """Installed once on page load: the gate's counters, the vote buttons' lock, and ``window.musicrlArena``."""
    return """
() => {
  const GATE = __GATE__;
  const A = window.musicrlArena = window.musicrlArena || {};
  A.gate = GATE;
  A.side = (el) => !el || !el.closest ? null
    : el.closest('#arena-audio-a') ? 'a' : el.closest('#arena-audio-b') ? 'b' : null;
  A.buttons = () => Array.from(document.querySelectorAll('#vote-row button'));
  A.need = (s) => Math.min(GATE, A.dur[s] > 0 ? A.dur[s] : GATE);
  A.heard = (s) => A.dur[s] > 0 ? Math.min(A.sec[s], A.dur[s]) : A.sec[s];
  A.ready = () => A.hasPair && !A.voted && !A.busy && A.sec.a >= A.need('a') && A.sec.b >= A.need('b');
  A.render = () => {
    const ready = A.ready();
    A.buttons().forEach((b) => { b.disabled = !ready; b.setAttribute('aria-disabled', String(!ready)); });
    const el = document.getElementById('arena-gate-status');
    if (!el) return;
    const f = (s) => Math.min(A.sec[s], A.need(s)).toFixed(1);
    if (!A.hasPair) el.textContent = 'Click "New pair" to get two clips.';
    else if (A.voted) el.textContent = 'Vote recorded: the model names are shown below. '
      + 'Click "New pair" for the next one.';
    else if (A.busy) el.textContent = 'Sending your vote…';
    else if (ready) el.textContent = 'Both clips heard: vote below.';
    else el.textContent = `Voting unlocks after you have played each clip for ${GATE} s (or all of it if shorter). `
      + `Heard so far: A ${f('a')} s, B ${f('b')} s.`;
  };
  A.reset = () => {
    A.sec = {a: 0, b: 0}; A.last = {a: null, b: null}; A.dur = {a: 0, b: 0};
    A.hasPair = false; A.voted = false; A.busy = false; A.choice = null; A.render();
  };
  A.paired = () => { A.hasPair = true; A.render(); };
  A.seconds = () => ({a: A.heard('a'), b: A.heard('b')});
  A.afterVote = (result, token) => {
    A.busy = false;
    if (result && token && result.pair_id === String(token).split('.')[0]) A.voted = true;
    A.render();
  };
  if (!A.installed) {
    A.installed = true;
    const track = (e) => {
      const s = A.side(e.target);
      if (!s) return;
      const t = e.target.currentTime;
      if (Number.isFinite(e.target.duration)) A.dur[s] = e.target.duration;
      if (e.type === 'timeupdate' && !e.target.paused && !e.target.seeking && A.last[s] !== null) {
        const d = t - A.last[s];
        if (d > 0 && d < 1.0) A.sec[s] += d;
      }
      A.last[s] = t;
      A.render();
    };
    ['play', 'timeupdate', 'seeked', 'loadedmetadata', 'durationchange'].forEach(
      (type) => document.addEventListener(type, track, true));
    document.addEventListener('emptied', (e) => {
      const s = A.side(e.target);
      if (s) { A.sec[s] = 0; A.last[s] = null; A.dur[s] = 0; A.render(); }
    }, true);
    // Capture phase: runs before the button's own handler, so a locked button never sends a vote.
    document.addEventListener('click', (e) => {
      const button = e.target && e.target.closest ? e.target.closest('#vote-row button') : null;
      if (!button) return;
      if (!A.ready()) { e.stopPropagation(); e.preventDefault(); return; }
      A.choice = button.id.replace('vote-', '');
      A.busy = true;
      setTimeout(A.render, 0);
    }, true);
  }
  A.reset();
}
""".replace("__GATE__", repr(float(gate_s)))


# The page's votes are people's: ``simulated`` is always false from here (a scripted client may set it).
VOTE_JS = """
(token, choice, listened_a, listened_b, feedback, rater_id, simulated) => {
  const A = window.musicrlArena;
  const s = A ? A.seconds() : {a: 0, b: 0};
  return [token, (A && A.choice) || '', s.a, s.b, feedback, rater_id, false];
}
"""

NEW_PAIR_JS = """
(prompt, rater_id) => { if (window.musicrlArena) window.musicrlArena.reset(); return [prompt, rater_id]; }
"""
PAIR_READY_JS = "() => { if (window.musicrlArena) window.musicrlArena.paired(); return ['', '', null, '']; }"
AFTER_VOTE_JS = """
(result, token, text, shown) => {
  const A = window.musicrlArena;
  if (A) A.afterVote(result, token);
  return [A && A.voted ? text : shown];
}
"""
