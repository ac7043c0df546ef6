"""The Gradio UI: layout and wiring only. Every decision lives in the services passed in.

``build_ui(services)`` returns a ``gr.Blocks`` with three tabs — Generate, Arena, Leaderboard — and
four public API endpoints with stable names, the same ones the page itself calls:

- ``generate(prompt, model_id, duration, variations, cfg, temperature, top_k, seed, quality_diversity)``
  -> 4 audio files, 4 spectrogram pictures (None past ``variations``), clip metadata (JSON)
- ``new_pair(prompt)`` -> audio A, audio B, pair id, the prompt used ("" takes one from the bank)
- ``vote(pair_id, choice, listened_a, listened_b, feedback, rater_id)`` -> reveal text, vote (JSON)
- ``leaderboard()`` -> summary text, ratings table, win-rate matrix picture

The listening gate is measured in the browser: ``ARENA_JS`` adds capture-phase listeners for the
arena's two ``<audio>`` elements and sums the time actually played (``timeupdate`` steps under one
second; seeks are not counted). When both clips reach the gate it clicks a hidden button whose
event enables the vote buttons, and each vote sends the measured seconds; the store refuses
votes under the gate whatever the page says.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gradio as gr

from app.service import (
    CFG_RANGE,
    DEFAULT_CFG,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    MAX_VARIATIONS,
    PROMPT_BANK,
    SEED_RANGE,
    TEMPERATURE_RANGE,
    TOP_K_RANGE,
    ServiceError,
)
from app.store import VoteRejected
from models.errors import InputError

if TYPE_CHECKING:
    from app.main import AppServices


def theme() -> gr.themes.Base:
    """The default look with system fonts: the page fetches nothing from other hosts."""
    system = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
    return gr.themes.Default(font=system, font_mono=["ui-monospace", "Consolas", "monospace"])


CSS = """
#arena-gate-status { font-weight: 600; padding: 6px 10px; border-radius: 6px;
                     background: var(--block-background-fill); }
.vote-row button { min-height: 52px; font-size: 1.05em; }
#clip-info, #arena-reveal { min-height: 1.5em; }
.spectrogram img { image-rendering: pixelated; width: 100% !important; object-fit: fill !important; }
"""

ARENA_JS = """
() => {
  const GATE = __GATE__;
  const A = window.musicrlArena = window.musicrlArena || {};
  A.gate = GATE;
  A.side = (el) => !el || !el.closest ? null
    : el.closest('#arena-audio-a') ? 'a' : el.closest('#arena-audio-b') ? 'b' : null;
  A.render = () => {
    const el = document.getElementById('arena-gate-status');
    if (!el) return;
    const f = (s) => Math.min(A.sec[s], GATE).toFixed(1);
    if (A.voted) el.textContent = 'Vote recorded: the model names are shown below. Click "New pair" for the next one.';
    else if (A.sec.a >= GATE && A.sec.b >= GATE) el.textContent = 'Both clips heard: vote below.';
    else el.textContent = `Voting unlocks after you have played each clip for ${GATE} s. `
      + `Heard so far: A ${f('a')} s, B ${f('b')} s.`;
  };
  A.reset = () => {
    A.sec = {a: 0, b: 0}; A.last = {a: null, b: null}; A.voted = false; A.unlocked = false; A.render();
  };
  A.seconds = () => ({a: A.sec.a, b: A.sec.b});
  A.markVoted = () => { A.voted = true; A.render(); };
  A.check = () => {
    if (A.unlocked || A.voted || A.sec.a < GATE || A.sec.b < GATE) return;
    A.unlocked = true;
    const button = document.querySelector('#arena-unlock');
    if (button) button.click();
  };
  if (!A.installed) {
    A.installed = true;
    const track = (e) => {
      const s = A.side(e.target);
      if (!s) return;
      const t = e.target.currentTime;
      if (e.type === 'timeupdate' && !e.target.paused && !e.target.seeking && A.last[s] !== null) {
        const d = t - A.last[s];
        if (d > 0 && d < 1.0) A.sec[s] += d;
      }
      A.last[s] = t;
      A.render();
      A.check();
    };
    ['play', 'timeupdate', 'seeked'].forEach((type) => document.addEventListener(type, track, true));
    document.addEventListener('emptied', (e) => {
      const s = A.side(e.target);
      if (s) { A.sec[s] = 0; A.last[s] = null; A.unlocked = false; A.render(); }
    }, true);
  }
  A.reset();
}
"""

VOTE_JS = """
(pair_id, choice, listened_a, listened_b, feedback, rater_id) => {
  const s = window.musicrlArena ? window.musicrlArena.seconds() : {a: 0, b: 0};
  return [pair_id, "__CHOICE__", s.a, s.b, feedback, rater_id];
}
"""

UI_ONLY: dict[str, Any] = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}  # page-only events
VOTE_LABELS = {"a": "A is better", "tie": "Tie", "both_bad": "Both are bad", "b": "B is better"}


def _user_error(err: Exception) -> gr.Error:
    """One clear message for the listener (the modal renders HTML, so escape it)."""
    message = err.reason if isinstance(err, VoteRejected) else str(err)
    return gr.Error(html.escape(message, quote=False), print_exception=False)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into gr.Error, keeping the signature gradio inspects."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (InputError, ServiceError, VoteRejected) as err:
            raise _user_error(err) from None

    return wrapped


def build_ui(services: AppServices, *, title: str = "musicrl") -> gr.Blocks:
    """The app's page. ``services`` bundles registry, generation, arena, leaderboard and admin."""
    registry, generation, arena = services.registry, services.generation, services.arena
    leaderboard, admin = services.leaderboard, services.admin
    gate = arena.min_listen_s
    first_model = registry.ids[0]

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {title}: text to music\n"
            "**Generate** music from a text description, rate blind pairs of clips in the **Arena**, "
            "and see which models listeners prefer on the **Leaderboard**."
        )
        if registry.notice:
            gr.Markdown(f"> ⚠️ {registry.notice}", elem_id="registry-notice")

        # ------------------------------------------------------------------- Generate
        with gr.Tab("Generate", id="generate"):
            with gr.Row():
                with gr.Column(scale=3):
                    prompt = gr.Textbox(label="Describe the music", lines=3, max_length=1000,
                                        placeholder="e.g. calm ambient piano with soft pads, slow and spacious")
                    gr.Examples([[p] for p in PROMPT_BANK[:6]], inputs=[prompt], label="Example prompts (click one)")
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-button")
                with gr.Column(scale=2):
                    model = gr.Dropdown(choices=[(registry.display_name(i), i) for i in registry.ids],
                                        value=first_model, label="Model")
                    model_info = gr.Markdown()
                    duration = gr.Slider(0.5, 30, value=4, step=0.5, label="Duration (seconds)")
                    variations = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="Variations (different seeds)")
                    with gr.Accordion("Sampling settings", open=False):
                        cfg = gr.Slider(*CFG_RANGE, value=DEFAULT_CFG, step=0.1,
                                        label="CFG scale (prompt adherence; 1 = off)")
                        lam = gr.Slider(0, 1, value=0.5, step=0.05, visible=False,
                                        label="Quality <-> diversity (0 = quality model, 1 = diversity model)")
                        temperature = gr.Slider(*TEMPERATURE_RANGE, value=DEFAULT_TEMPERATURE, step=0.05,
                                                label="Temperature (higher = more surprising)")
                        top_k = gr.Slider(*TOP_K_RANGE, value=DEFAULT_TOP_K, step=1, label="Top-k (0 = no limit)")
                        seed = gr.Number(value=-1, precision=0, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1],
                                         label="Seed (-1 = random; variation i uses seed + i)")
            clip_info = gr.Markdown(elem_id="clip-info")
            clip_meta = gr.JSON(visible=False, label="Clip metadata")
            slots, audios, spectrograms = [], [], []
            with gr.Row():
                for i in range(MAX_VARIATIONS):
                    with gr.Column(visible=i == 0, min_width=240) as slot:
                        audios.append(gr.Audio(label=f"Clip {i + 1}", type="filepath", interactive=False,
                                               buttons=["download"], elem_id=f"clip-audio-{i + 1}"))
                        spectrograms.append(gr.Image(label=f"Clip {i + 1}: spectrogram (time →, pitch ↑)",
                                                     type="filepath", interactive=False, height=160,
                                                     buttons=["download"], elem_id=f"clip-spec-{i + 1}",
                                                     elem_classes=["spectrogram"]))
                    slots.append(slot)

        # ------------------------------------------------------------------- Arena
        with gr.Tab("Arena", id="arena"):
            reason = arena.unavailable_reason
            gr.Markdown(
                "Two anonymous models make music for the same prompt. **1.** Type a prompt (or click "
                "**Random prompt**), then click **New pair**. **2.** Listen to both clips — voting unlocks after "
                f"**{gate:g} s of each**. **3.** Vote; the model names are revealed after your vote."
                + (f"\n\n> ⚠️ {reason}" if reason else "")
            )
            with gr.Row(equal_height=True):
                arena_prompt = gr.Textbox(label="Prompt (leave empty for one from the prompt bank)", scale=4,
                                          max_length=1000, elem_id="arena-prompt")
                bank_btn = gr.Button("Random prompt", scale=1)
                pair_btn = gr.Button("New pair", variant="primary", scale=1, elem_id="arena-new-pair",
                                     interactive=not reason)
            pair_prompt = gr.Textbox(label="Prompt of this pair", interactive=False)
            player = dict(type="filepath", interactive=False, buttons=[],
                          waveform_options=gr.WaveformOptions(show_recording_waveform=False))
            with gr.Row():
                audio_a = gr.Audio(label="Clip A", elem_id="arena-audio-a", **player)
                audio_b = gr.Audio(label="Clip B", elem_id="arena-audio-b", **player)
            gr.HTML('<div id="arena-gate-status">Click "New pair" to get two clips.</div>')
            with gr.Row(elem_classes=["vote-row"]):
                vote_buttons = {c: gr.Button(label, interactive=False, elem_id=f"vote-{c}")
                                for c, label in VOTE_LABELS.items()}
            feedback = gr.Textbox(label="Feedback (optional): what made the difference?", lines=2,
                                  max_length=services.store.feedback_max_chars)
            reveal = gr.Markdown(elem_id="arena-reveal", label="Models revealed")
            vote_result = gr.JSON(visible=False, label="Vote")
            pair_id = gr.Textbox(visible=False, label="Pair id")
            choice = gr.Textbox(visible=False)
            listened_a, listened_b = gr.Number(visible=False), gr.Number(visible=False)
            rater_id = gr.Textbox(visible=False)
            rater_state = gr.BrowserState(None, storage_key="musicrl-rater-id", secret=services.browser_secret)
            unlock = gr.Button("unlock", visible="hidden", elem_id="arena-unlock")

        # ------------------------------------------------------------------- Leaderboard
        with gr.Tab("Leaderboard", id="leaderboard") as leaderboard_tab:
            board_summary = gr.Markdown(elem_id="leaderboard-summary", label="Summary")
            board = gr.Dataframe(headers=["Rank", "Model", "Rating", "95% CI", "Votes"], interactive=False,
                                 label="Arena ratings", elem_id="leaderboard-table")
            win_rates = gr.Image(label="Win-rate matrix", type="filepath", interactive=False, height=420)
            refresh_btn = gr.Button("Refresh", elem_id="leaderboard-refresh")
            with gr.Accordion("Admin: export the votes", open=False):
                gr.Markdown("Exports every vote as JSONL in TRL's preference layout (needs the admin token)."
                            if admin.enabled else "Export is off: start the app with `--admin-token`.")
                token = gr.Textbox(label="Admin token", type="password", interactive=admin.enabled)
                export_btn = gr.Button("Export preferences", interactive=admin.enabled)
                export_file = gr.File(label="Export", interactive=False)

        # ------------------------------------------------------------------- wiring: Generate
        def describe_model(model_id: str) -> tuple:
            try:
                entry = registry.get(model_id)
                cfg_free = registry.is_cfg_free(model_id)
                limit = generation.model_max_duration(model_id)
            except (InputError, OSError, RuntimeError, ValueError) as err:
                return gr.Slider(), gr.Slider(), gr.Slider(), f"⚠️ {html.escape(str(err), quote=False)}"
            notes = [entry.description] if entry.description else []
            if cfg_free:
                notes.append("This model is CFG-free: it samples without guidance.")
            if entry.merge is not None:
                notes.append("Weight merge of two models: the quality <-> diversity slider under Sampling "
                             "settings picks the mix.")
            merge_init = entry.merge.init if entry.merge is not None else 0.5
            return (gr.Slider(visible=not cfg_free), gr.Slider(visible=entry.merge is not None, value=merge_init),
                    gr.Slider(maximum=limit), " ".join(notes))

        model_outputs = [cfg, lam, duration, model_info]
        model.change(describe_model, [model], model_outputs, api_visibility="private", show_progress="minimal")
        demo.load(describe_model, [model], model_outputs, api_visibility="private")

        @_guard
        def generate(prompt: str, model_id: str, duration: float, variations: float, cfg: float,
                     temperature: float, top_k: float, seed: float, quality_diversity: float,
                     progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - gradio's progress idiom
            clips = generation.generate(model_id, prompt, duration, cfg, temperature, top_k, seed, variations,
                                        quality_diversity, progress=lambda f, d: progress(f, desc=d))
            paths = [str(c.clip.audio_file) for c in clips] + [None] * (MAX_VARIATIONS - len(clips))
            pictures = [str(c.spectrogram) if c.spectrogram else None for c in clips]
            pictures += [None] * (MAX_VARIATIONS - len(clips))
            meta = {"model_id": model_id, "model": registry.display_name(model_id), "prompt": clips[0].clip.prompt,
                    "clips": [{"clip_id": c.clip.id, "seed": c.clip.seed, "duration": c.clip.duration,
                               "sample_rate": c.clip.sample_rate, "params": c.clip.params,
                               "checkpoint_hash": c.clip.checkpoint_hash} for c in clips]}
            return (*paths, *pictures, meta)

        def show_clips(meta: dict | None) -> list:
            clips = (meta or {}).get("clips", [])
            if not clips:
                return [gr.Column(visible=i == 0) for i in range(MAX_VARIATIONS)] + [""]
            seeds = ", ".join(str(c["seed"]) for c in clips)
            text = (f"{len(clips)} clip(s) from **{meta['model']}**, {clips[0]['duration']:g} s each, "
                    f"seed(s) {seeds}. Play them below; ⬇ downloads the WAV.")
            return [gr.Column(visible=i < len(clips)) for i in range(MAX_VARIATIONS)] + [text]

        gen_inputs = [prompt, model, duration, variations, cfg, temperature, top_k, seed, lam]
        gr.on([generate_btn.click, prompt.submit], generate, gen_inputs, [*audios, *spectrograms, clip_meta],
              api_name="generate", concurrency_limit=None).success(
            show_clips, [clip_meta], [*slots, clip_info], **UI_ONLY)

        # ------------------------------------------------------------------- wiring: Arena
        @_guard
        def new_pair(prompt: str, request: gr.Request) -> tuple[str, str, str, str]:
            pair = arena.new_pair(request.session_hash if request else None, prompt)
            return str(pair.audio_a), str(pair.audio_b), pair.pair_id, pair.prompt

        def pair_ready() -> list:
            return [gr.Button(interactive=False)] * len(vote_buttons) + ["", None, gr.Textbox(value="")]

        pair_btn.click(new_pair, [arena_prompt], [audio_a, audio_b, pair_id, pair_prompt], api_name="new_pair",
                       concurrency_limit=None,
                       js="(p) => { if (window.musicrlArena) window.musicrlArena.reset(); return [p]; }").success(
            pair_ready, None, [*vote_buttons.values(), reveal, vote_result, feedback], **UI_ONLY)
        bank_btn.click(arena.random_prompt, None, [arena_prompt], **UI_ONLY)
        unlock.click(lambda: [gr.Button(interactive=True)] * len(vote_buttons), None, list(vote_buttons.values()),
                     **UI_ONLY)

        @_guard
        def vote(pair_id: str, choice: str, listened_a: float, listened_b: float, feedback: str, rater_id: str,
                 request: gr.Request) -> tuple[str, dict]:
            outcome = arena.vote(pair_id, request.session_hash if request else None, choice, rater_id,
                                 listened_a, listened_b, feedback)
            verdict = {"a": "A is better", "b": "B is better", "tie": "a tie", "both_bad": "both are bad"}
            text = (f"### Clip A was **{outcome.name_a}** · Clip B was **{outcome.name_b}**\n"
                    f"Your vote: {verdict[outcome.choice]}. Thank you! Click **New pair** for the next one.")
            return text, {"pair_id": outcome.pair_id, "choice": outcome.choice, "model_a": outcome.model_a,
                          "model_b": outcome.model_b, "name_a": outcome.name_a, "name_b": outcome.name_b}

        vote_inputs = [pair_id, choice, listened_a, listened_b, feedback, rater_id]
        for c, button in vote_buttons.items():
            button.click(vote, vote_inputs, [reveal, vote_result], js=VOTE_JS.replace("__CHOICE__", c),
                         api_name="vote" if c == "a" else None, api_visibility="public" if c == "a" else "private",
                         concurrency_limit=None).success(
                lambda: [gr.Button(interactive=False)] * len(vote_buttons), None, list(vote_buttons.values()),
                js="() => { if (window.musicrlArena) window.musicrlArena.markVoted(); }",
                **UI_ONLY)

        def ensure_rater(saved: object) -> tuple[str, str]:
            rater = saved if isinstance(saved, str) and 0 < len(saved) <= 64 else f"r-{secrets.token_hex(8)}"
            return rater, rater

        demo.load(ensure_rater, [rater_state], [rater_state, rater_id], api_visibility="private")
        demo.load(None, js=ARENA_JS.replace("__GATE__", repr(float(gate))))

        # ------------------------------------------------------------------- wiring: Leaderboard
        def show_leaderboard() -> tuple[str, list[list], str | None]:
            view = leaderboard.view()
            rows = [[r["rank"], f"{r['name']} ({r['model']})", round(r["rating"]),
                     f"{r['ci_low']:.0f} – {r['ci_high']:.0f}", r["votes"]] for r in view.rows]
            waiting = ", ".join(f"{r['name']} ({r['model']}): {r['votes']}" for r in view.provisional)
            text = (f"**{view.total_votes} vote(s).** Bradley–Terry ratings on the Elo scale (the average model "
                    "is 1000; +400 means 10:1 odds of being preferred), with 95 % bootstrap intervals "
                    f"(1,000 resamples). A model is ranked once it has **{view.min_votes} vote(s)**.")
            if waiting:
                text += f"\n\nCollecting votes (votes so far): {waiting}."
            return text, rows, str(view.win_rate_png) if view.win_rate_png else None

        board_outputs = [board_summary, board, win_rates]
        refresh_btn.click(show_leaderboard, None, board_outputs, api_name="leaderboard", concurrency_limit=4)
        leaderboard_tab.select(show_leaderboard, None, board_outputs, api_visibility="private", concurrency_limit=4)
        demo.load(show_leaderboard, None, board_outputs, api_visibility="private")

        @_guard
        def export(token: str) -> str:
            path, count = admin.export(token)
            gr.Info(f"Exported {count} vote(s).")
            return str(path)

        export_btn.click(export, [token], [export_file], api_visibility="private")
    return demo
