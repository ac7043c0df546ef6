"""The Gradio page: layout and wiring only. Every decision lives in the services passed in.

``build_ui(services)`` returns a ``gr.Blocks`` with three tabs — Generate, Arena, Leaderboard. The
server runs Python for exactly eight events, each a public API endpoint with a stable name, the same
ones the page itself calls; everything else the page does is JavaScript (``app/page.py``), so there
is no hidden server function to call by index:

- ``generate(prompt, model_id, duration, variations, cfg, temperature, top_k, seed, quality_diversity,
  best_of, best_of_reward, objective_weights)`` -> 4 audio files, 4 spectrogram pictures (None past
  ``variations``), clip 1 while it is sampled (JSON pieces the page plays as they come, ``live_payload``;
  API clients can ignore it; None once the clips are there), clip metadata (JSON, always last).
  ``best_of`` (default 1 = off): N candidates per clip, the best by ``best_of_reward`` kept
  (``app/best_of.py``); ``objective_weights`` (default {} = uniform): {objective: weight} for a steerable
  model, {} for others. The last three may be left out.
- ``extend(clip_id, seconds)`` -> the extended clip's audio, spectrogram, id and metadata: a clip made in the
  Generate tab and ``seconds`` more of it, same model and settings, a new seed (``app/extend.py``)
- ``continue(upload, prompt, model_id, duration, variations, cfg, temperature, top_k, seed,
  quality_diversity, objective_weights)`` -> like ``generate`` (and the upload cleared): clips that begin
  with the uploaded audio (deleted from the server once read); ``duration`` counts it
- ``new_pair(prompt, rater_id)`` -> audio A, audio B, the pair's vote token, the prompt used ("" takes
  one from the bank; the rater id may be ""). The token is a secret: only this session can vote with it.
- ``vote(pair_token, choice, listened_a, listened_b, feedback, rater_id, simulated)`` -> reveal text,
  vote (JSON). ``simulated`` (default false; the page never sets it) marks a simulated listener's vote.
- ``leaderboard(votes)`` -> summary text, ratings table, win-rate matrix picture, computed from the
  votes of people ("people", the default) or of simulated listeners ("simulated") only
- ``models()`` -> the model dropdown's update (its ``choices``: [name, id] pairs), and per served
  model id its name, notes and slider settings (a steerable model's objectives, the best-of rewards
  usable with it) (the registry re-read if its file changed: the page
  calls it on load, so a reloaded page lists a model registered while the app runs)
- ``export(admin_token, votes)`` -> [preferences JSONL, rater consistency JSON], the raters'
  self-agreement table (admin only; wrong tokens are rate-limited; votes "all" (rows marked),
  "people" or "simulated")
"""

from __future__ import annotations

import base64
import functools
import html
import inspect
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app import page
from app.best_of import REWARDS
from app.extend import MIN_NEW_SECONDS
from app.generation import AudioPiece, ServiceError
from app.limits import Caller, RateLimited
from app.prompt_bank import PROMPT_BANK
from app.services import AppServices
from app.validation import (
    CFG_RANGE,
    DEFAULT_CFG,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    MAX_VARIATIONS,
    SEED_RANGE,
    TEMPERATURE_RANGE,
    TOP_K_RANGE,
)
from app.vote_rules import VoteRejected
from models.errors import InputError

log = logging.getLogger(__name__)
CSS, theme = page.CSS, page.theme
PUBLIC_API = ("generate", "extend", "continue", "new_pair", "vote", "leaderboard", "models", "export")
VOTE_LABELS = {"a": "A is better", "tie": "Tie", "both_bad": "Both are bad", "b": "B is better"}
# What happened, said before the reason (gradio's toast shows only "Error" above the message).
_PREFIXES = {VoteRejected: "Vote not recorded: ", RateLimited: "Too many requests: ", ServiceError: "Server busy: ",
             InputError: ""}
JS_ONLY: dict[str, Any] = {"queue": False, "show_progress": "hidden"}  # UI reactions: no Python behind them
REWARD_LABELS = {"adherence": "Text adherence", "quality": "Audio quality",
                 "adherence+quality": "Adherence + quality", "preference": "Listener preference (reward model)"}
assert set(REWARD_LABELS) == set(REWARDS)


def _user_error(err: Exception) -> gr.Error:
    """One clear message for the listener, saying what happened and why (the toast renders HTML)."""
    message = err.reason if isinstance(err, VoteRejected) else str(err)
    prefix = next(p for kind, p in _PREFIXES.items() if isinstance(err, kind))
    return gr.Error(html.escape(prefix + message, quote=False), title=prefix.rstrip(": ") or "Error",
                    print_exception=False)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into gr.Error, keeping the signature gradio inspects (and, for a
    generator function, what it is: gradio streams a generator's yields)."""
    user_errors = (InputError, ServiceError, VoteRejected, RateLimited)
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streamed(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except user_errors as err:
                raise _user_error(err) from None

        return streamed

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except user_errors as err:
            raise _user_error(err) from None

    return wrapped


def caller_of(request: gr.Request | None, trust_forwarded_for: bool = False) -> Caller:
    """The session and network address behind a request (no request: no session, refused later)."""
    if request is None:
        return Caller(session="", address="")
    address = request.client.host if request.client is not None else ""
    if trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        address = forwarded or address
    return Caller(session=request.session_hash or "", address=address)


def live_payload(piece: AudioPiece) -> dict:
    """A piece of clip 1 for the page's live player (``app.page.LIVE_JS``): its first sample's index, the sample
    rate and the mono mix as base64 16-bit little-endian PCM (a second of 16 kHz audio: 43 kB)."""
    mono = piece.audio.float().mean(dim=0).clamp(-1.0, 1.0).numpy()
    pcm = np.round(mono * 32767).astype("<i2").tobytes()
    return {"start": piece.start, "rate": piece.sample_rate, "pcm16": base64.b64encode(pcm).decode("ascii")}


def clip_outputs(registry: Any, model_id: str, clips: list) -> tuple[list, list, dict]:
    """The Generate tab's outputs for ``clips`` (``app.generation.GeneratedClip``): MAX_VARIATIONS audio paths
    and spectrogram pictures (None where there are fewer clips) and the clip info the page shows."""
    blank = [None] * (MAX_VARIATIONS - len(clips))
    paths = [str(c.clip.audio_file) for c in clips] + blank
    pictures = [str(c.spectrogram) if c.spectrogram else None for c in clips] + blank
    meta = {"model_id": model_id, "model": registry.display_name(model_id), "prompt": clips[0].clip.prompt,
            "clips": [{"clip_id": c.clip.id, "seed": c.clip.seed, "duration": c.clip.duration,
                       "sample_rate": c.clip.sample_rate, "params": c.clip.params,
                       "checkpoint_hash": c.clip.checkpoint_hash} for c in clips]}
    return paths, pictures, meta


def model_table(services: AppServices) -> dict[str, dict]:
    """What the page shows per model (name, notes, which sliders apply, a steerable model's objectives, the
    best-of rewards usable with its sample rate); loads each model (and the scorers) once (cached).
    An entry whose model fails to load is left out (and logged), so one bad entry added to a running
    app's registry does not take the list down."""
    registry, scorers, table = services.registry, services.generation.scorers, {}
    for model_id in registry.ids:
        entry = registry.get(model_id)
        try:
            cfg_free, limit = registry.is_cfg_free(model_id), services.generation.model_max_duration(model_id)
            objectives = registry.objectives(model_id)
            usable, why_not = scorers.available(registry.sample_rate(model_id)) if scorers.max_n > 1 else ([], "")
        except InputError as err:
            log.warning("model %s left out of the page's list: %s", model_id, err)
            continue
        notes = [entry.description] if entry.description else []
        notes.append(f"Up to {limit:g} s of audio per clip.")
        if cfg_free:
            notes.append("This model is CFG-free: it samples without guidance.")
        if entry.merge is not None:
            notes.append("A weight merge of two models: the quality <-> diversity slider picks the mix.")
        if objectives:
            notes.append(f"A steerable (CLP) model: the sliders weigh its objectives ({', '.join(objectives)}); "
                         "the weights are relative (scaled to sum 1).")
        if scorers.max_n > 1 and why_not:
            notes.append(f"Best of N {'is off for this model' if not usable else 'by some rewards is off'}: {why_not}")
        table[model_id] = {"name": entry.name, "notes": " ".join(notes), "cfg_free": cfg_free,
                           "merge": entry.merge is not None,
                           "merge_init": entry.merge.init if entry.merge is not None else 0.5,
                           "max_duration": limit, "steer": list(objectives), "best_of": usable}
    return table


def build_ui(services: AppServices, *, title: str = "musicrl") -> gr.Blocks:
    """The app's page. ``services`` bundles registry, generation, arena, leaderboard and admin."""
    registry, generation, arena = services.registry, services.generation, services.arena
    scorers = generation.scorers
    leaderboard, admin = services.leaderboard, services.admin
    who = functools.partial(caller_of, trust_forwarded_for=services.trust_forwarded_for)
    models = model_table(services)

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
                with gr.Column(scale=3, min_width=300):
                    prompt = gr.Textbox(label="Describe the music", lines=3, max_length=1000,
                                        placeholder="e.g. calm ambient piano with soft pads, slow and spacious")
                    examples = gr.Dropdown(choices=list(PROMPT_BANK[:8]), value=None, label="Example prompts",
                                           info="Pick one to fill in the description")
                with gr.Column(scale=2, min_width=300):
                    # any value reaches the service, which names the served models when it is not one: the
                    # list can grow while the app runs (a reloaded registry), past the choices of this page
                    model = gr.Dropdown(choices=[(v["name"], k) for k, v in models.items()],
                                        value=registry.ids[0], label="Model", allow_custom_value=True)
                    models_json = gr.JSON(value=models, visible=False, label="Models")
                    model_info = gr.Markdown(elem_id="model-info")
                    lam = gr.Slider(0, 1, value=0.5, step=0.05, elem_id="lam-slider",
                                    label="Quality <-> diversity (0 = quality model, 1 = diversity model)")
                    duration = gr.Slider(0.5, 30, value=4, step=0.5, label="Duration (seconds)",
                                         elem_id="duration-slider")
                    steer = [gr.Slider(0, 1, value=1, step=0.05, label=f"Weight of objective {i}",
                                       elem_id=f"steer-{i}", elem_classes=["steer-slider"])
                             for i in range(1, page.MAX_STEER_SLIDERS + 1)]
                    # {} (uniform) rather than None: the API parameter then has a default, so clients may omit it
                    objective_weights = gr.JSON(value={}, visible=False, label="Objective weights")
                    variations = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="Variations (different seeds)")
                    with gr.Row(elem_id="best-of-row"):
                        best_of = gr.Slider(1, max(2, scorers.max_n), value=1, step=1, elem_id="best-of-slider",
                                            label="Best of N (1 = off)",
                                            info="Sample N candidates per clip and keep the one the reward "
                                                 "scores highest; costs N times the time")
                        best_of_reward = gr.Dropdown(choices=[(REWARD_LABELS.get(c, c), c) for c in scorers.choices],
                                                     value=scorers.choices[0], label="Reward that picks the best",
                                                     elem_id="best-of-reward")
                    with gr.Accordion("Sampling settings", open=False):
                        cfg = gr.Slider(*CFG_RANGE, value=DEFAULT_CFG, step=0.1, elem_id="cfg-slider",
                                        label="CFG scale (prompt adherence; 1 = off)")
                        temperature = gr.Slider(*TEMPERATURE_RANGE, value=DEFAULT_TEMPERATURE, step=0.05,
                                                label="Temperature (higher = more surprising)")
                        top_k = gr.Slider(*TOP_K_RANGE, value=DEFAULT_TOP_K, step=1, label="Top-k (0 = no limit)")
                        seed = gr.Number(value=-1, precision=0, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1],
                                         label="Seed (-1 = random; variation i uses seed + i)")
            generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-button")
            # clip 1 plays while it is sampled: pieces of it reach `live` and the page plays them (page.LIVE_JS)
            with gr.Row(visible=services.stream_audio, elem_id="live-row"):
                gr.Checkbox(value=True, label="Play clip 1 while it is made", elem_id="live-play", min_width=200)
                gr.HTML("", elem_id="live-status")
            live = gr.JSON(visible=False, label="Clip 1 while it is made")
            clip_info = gr.Markdown(elem_id="clip-info")
            clip_meta = gr.JSON(visible=False, label="Clip metadata")
            audios, spectrograms = [], []
            with gr.Row(elem_id="clip-slots"):
                for i in range(1, MAX_VARIATIONS + 1):
                    with gr.Column(min_width=240, elem_classes=["clip-slot", f"clip-slot-{i}"]):
                        audios.append(gr.Audio(label=f"Clip {i}", type="filepath", interactive=False,
                                               buttons=["download"], elem_id=f"clip-audio-{i}"))
                        spectrograms.append(gr.Image(label=f"Clip {i}: spectrogram (time →, pitch ↑)",
                                                     type="filepath", interactive=False, height=160,
                                                     buttons=["download"], elem_id=f"clip-spec-{i}",
                                                     elem_classes=["spectrogram"]))

            with gr.Accordion("Continue: extend a clip above, or continue your own audio", open=False,
                              elem_id="continue-box"):
                gr.Markdown("**Extend this clip** adds seconds to a clip above with its own model and settings. "
                            "**Continue this audio** continues an uploaded file (WAV, FLAC, MP3 or OGG, shorter than "
                            "the model's maximum) with the settings above; *Duration* then counts the upload. The "
                            "upload is deleted from the server once read; only the clip made from it is kept.")
                with gr.Row():
                    with gr.Column(min_width=240):
                        extend_which = gr.Radio([(f"Clip {i}", i) for i in range(1, MAX_VARIATIONS + 1)], value=1,
                                                label="Clip to extend", elem_id="extend-which")
                        extend_seconds = gr.Slider(MIN_NEW_SECONDS, 30, value=4, step=0.5, label="Seconds to add",
                                                   elem_id="extend-seconds")
                        extend_clip_id = gr.Textbox(value="", visible=False, label="Clip id")
                        extend_btn = gr.Button("Extend this clip", elem_id="extend-button")
                    with gr.Column(min_width=240):
                        upload = gr.File(label="Audio to continue", file_types=[".wav", ".flac", ".mp3", ".ogg"],
                                         type="filepath", elem_id="continue-upload")
                        continue_btn = gr.Button("Continue this audio", elem_id="continue-button")
                with gr.Row():
                    extended_audio = gr.Audio(label="Extended clip", type="filepath", interactive=False,
                                              buttons=["download"], elem_id="extended-audio")
                    extended_spec = gr.Image(label="Extended clip: spectrogram", type="filepath", interactive=False,
                                             height=160, elem_classes=["spectrogram"], elem_id="extended-spec")
                extended_meta = gr.JSON(visible=False, label="Extended clip metadata")

        # ------------------------------------------------------------------- Arena
        with gr.Tab("Arena", id="arena"):
            reason, gate = arena.unavailable_reason, arena.min_listen_s
            gr.Markdown(
                "Two anonymous models make music for the same prompt. **1.** Type a prompt (or click "
                "**Random prompt**), then click **New pair**. **2.** Listen to both clips — voting unlocks after "
                f"**{gate:g} s of each**. **3.** Vote; the model names are revealed after your vote."
                + (f"\n\n> ⚠️ {reason}" if reason else "")
            )
            with gr.Row(equal_height=True):
                arena_prompt = gr.Textbox(label="Prompt (leave empty for one from the prompt bank)", scale=4,
                                          max_length=1000, elem_id="arena-prompt")
                bank_btn = gr.Button("Random prompt", scale=1, elem_id="arena-random-prompt")
                pair_btn = gr.Button("New pair", variant="primary", scale=1, elem_id="arena-new-pair",
                                     interactive=not reason)
            pair_prompt = gr.Textbox(label="Prompt of this pair", interactive=False)
            player = dict(type="filepath", interactive=False, buttons=[],
                          waveform_options=gr.WaveformOptions(show_recording_waveform=False))
            with gr.Row():
                audio_a = gr.Audio(label="Clip A", elem_id="arena-audio-a", **player)
                audio_b = gr.Audio(label="Clip B", elem_id="arena-audio-b", **player)
            gr.HTML('<div id="arena-gate-status" role="status" aria-live="polite">Click "New pair" to get two '
                    "clips.</div>")
            with gr.Row(elem_id="vote-row"):
                vote_buttons = [gr.Button(label, elem_id=f"vote-{c}") for c, label in VOTE_LABELS.items()]
            feedback = gr.Textbox(label="Feedback (optional): what made the difference?", lines=2,
                                  max_length=services.store.feedback_max_chars, elem_id="arena-feedback")
            reveal = gr.Markdown(elem_id="arena-reveal", label="Models revealed")
            # The vote's own outputs stay hidden (a refused vote then marks nothing on the page); the page
            # copies the reveal into view once the vote is stored.
            reveal_text = gr.Textbox(visible=False, label="Reveal")
            vote_result = gr.JSON(visible=False, label="Vote")
            pair_token = gr.Textbox(visible=False, label="Pair token")
            choice = gr.Textbox(visible=False, label="Choice")
            listened_a = gr.Number(visible=False, label="Seconds of A heard")
            listened_b = gr.Number(visible=False, label="Seconds of B heard")
            rater_id = gr.Textbox(value="", visible=False, label="Rater id")  # "" default: optional in the API
            simulated = gr.Checkbox(value=False, visible=False, label="Simulated listener")  # the page never sets it

        # ------------------------------------------------------------------- Leaderboard
        with gr.Tab("Leaderboard", id="leaderboard") as leaderboard_tab:
            board_votes = gr.Radio([("People", "people"), ("Simulated listeners", "simulated")], value="people",
                                   label="Votes", elem_id="leaderboard-votes",
                                   info="Ratings from one kind of vote: people's, or the simulated listener panel's")
            board_summary = gr.Markdown(elem_id="leaderboard-summary", label="Summary")
            board = gr.Dataframe(headers=["#", "Model", "Rating", "95% CI", "Votes"], interactive=False, wrap=True,
                                 label="Arena ratings", elem_id="leaderboard-table")
            win_rates = gr.Image(label="Win-rate matrix", type="filepath", interactive=False, height=420)
            refresh_btn = gr.Button("Refresh", elem_id="leaderboard-refresh")
            with gr.Accordion("Admin: export the votes, rater consistency", open=False):
                gr.Markdown("Exports the votes as JSONL in TRL's preference layout, with each rater's agreement "
                            "with themselves on repeated pairs (needs the admin token)."
                            if admin.enabled else "Export is off: start the app with `--admin-token`.")
                token = gr.Textbox(label="Admin token", type="password", interactive=admin.enabled)
                export_votes = gr.Radio([("All (each row marked)", "all"), ("People", "people"),
                                         ("Simulated listeners", "simulated")], value="all", label="Votes to export",
                                        interactive=admin.enabled)
                export_btn = gr.Button("Export preferences", interactive=admin.enabled)
                export_file = gr.File(label="Export: preferences (JSONL), rater consistency (JSON)",
                                      interactive=False, file_count="multiple")
                consistency = gr.Dataframe(headers=["Votes", "Rater", "Agreed", "Repeats", "Self-agreement",
                                                    "95% CI"], interactive=False, wrap=True,
                                           label="Self-agreement on repeated pairs (sides swapped)")

        # ------------------------------------------------------------------- wiring: Generate
        @_guard
        def list_models() -> tuple[Any, dict]:
            registry.refresh()
            table = model_table(services)
            return gr.Dropdown(choices=[(v["name"], k) for k, v in table.items()]), table

        model_view = ([models_json, model, duration], [model_info, lam, duration, *steer])
        steer_view = ([models_json, model, *steer], [objective_weights])
        model.change(None, *model_view, js=page.MODEL_JS, **JS_ONLY)
        demo.load(None, *model_view, js=page.MODEL_JS, **JS_ONLY)
        demo.load(list_models, None, [model, models_json], api_name="models", concurrency_limit=4,
                  show_progress="hidden").then(None, *model_view, js=page.MODEL_JS, **JS_ONLY).then(
            None, *steer_view, js=page.STEER_JS, **JS_ONLY)
        gr.on([model.change, *(s.change for s in steer)], None, *steer_view, js=page.STEER_JS, **JS_ONLY)
        variations.change(None, [variations], None, js=page.SLOTS_JS, **JS_ONLY)
        demo.load(None, [variations], None, js=page.SLOTS_JS, **JS_ONLY)
        examples.input(None, [examples], [prompt], js="(x) => [x]", **JS_ONLY)

        @_guard
        def generate(prompt: str, model_id: str, duration: float, variations: float, cfg: float,
                     temperature: float, top_k: float, seed: float, quality_diversity: float, best_of: float,
                     best_of_reward: str, objective_weights: Any, request: gr.Request,
                     progress: gr.Progress = gr.Progress()) -> Iterator[tuple]:  # noqa: B008
            pieces = generation.generate_streaming(model_id, prompt, duration, cfg, temperature, top_k, seed,
                                                   variations, quality_diversity, best_of, best_of_reward,
                                                   objective_weights, caller=who(request),
                                                   progress=lambda f, d: progress(f, desc=d),
                                                   listen=services.stream_audio)
            while True:
                try:
                    piece = next(pieces)
                except StopIteration as done:
                    clips = done.value
                    break
                yield (*[gr.skip()] * (2 * MAX_VARIATIONS), live_payload(piece), gr.skip())
            paths, pictures, meta = clip_outputs(registry, model_id, clips)
            first = clips[0].clip.params
            if "prompt_cut" in first:
                meta["warning"] = first["prompt_cut"]
                gr.Warning(html.escape(first["prompt_cut"][0].upper() + first["prompt_cut"][1:]))
            if "weights" in first:
                meta["weights"] = first["weights"]
            if "best_of" in first:  # the cost of the whole request: N candidates per clip
                meta["best_of"] = {"n": first["best_of"]["n"], "reward": first["best_of"]["reward"],
                                   "candidates": first["best_of"]["n"] * len(clips),
                                   "seconds": first["best_of"]["cost"]["total_s"]}
            yield (*paths, *pictures, None, meta)

        gen_inputs = [prompt, model, duration, variations, cfg, temperature, top_k, seed, lam, best_of,
                      best_of_reward, objective_weights]
        gr.on([generate_btn.click, prompt.submit], generate, gen_inputs, [*audios, *spectrograms, live, clip_meta],
              api_name="generate", concurrency_limit=None, js=page.GENERATE_START_JS).then(
            None, None, None, js=page.GENERATE_END_JS, **JS_ONLY)
        clip_meta.change(None, [clip_meta], [clip_info], js=page.CLIP_INFO_JS, **JS_ONLY)
        demo.load(None, None, None, js=page.LIVE_INIT_JS, **JS_ONLY)
        live.change(None, [live], None, js=page.LIVE_JS, **JS_ONLY)

        # ------------------------------------------------------------------- wiring: continuation
        continuation = services.continuation
        if continuation is not None and continuation.upload_root is None:  # where gradio keeps uploads
            continuation.upload_root = Path(gr.utils.get_upload_folder()).resolve()
        pick_clip = "(meta, i) => [((meta && meta.clips) || [])[Number(i) - 1]?.clip_id || '']"
        gr.on([clip_meta.change, extend_which.change], None, [clip_meta, extend_which], [extend_clip_id],
              js=pick_clip, **JS_ONLY)

        @_guard
        def extend(clip_id: str, seconds: float, request: gr.Request,
                   progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
            if continuation is None:
                raise InputError("this server does not extend clips")
            c = continuation.extend(clip_id, seconds, caller=who(request), progress=lambda f, d: progress(f, desc=d))
            meta = {"clip_id": c.clip.id, "prompt": c.clip.prompt, "model_id": c.clip.model_id, "seed": c.clip.seed,
                    "duration": c.clip.duration, "params": c.clip.params}
            return str(c.clip.audio_file), str(c.spectrogram) if c.spectrogram else None, c.clip.id, meta

        extend_btn.click(extend, [extend_clip_id, extend_seconds],
                         [extended_audio, extended_spec, extend_clip_id, extended_meta], api_name="extend",
                         concurrency_limit=None)

        @_guard
        def continue_audio(upload: Any, prompt: str, model_id: str, duration: float, variations: float, cfg: float,
                           temperature: float, top_k: float, seed: float, quality_diversity: float,
                           objective_weights: Any, request: gr.Request,
                           progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
            if continuation is None:
                raise InputError("this server does not continue audio")
            clips = continuation.continue_upload(upload, prompt, model_id, duration, cfg, temperature, top_k, seed,
                                                 variations, quality_diversity, objective_weights,
                                                 caller=who(request), progress=lambda f, d: progress(f, desc=d))
            paths, pictures, meta = clip_outputs(registry, model_id, clips)
            return (*paths, *pictures, meta, None)

        continue_btn.click(continue_audio, [upload, prompt, model, duration, variations, cfg, temperature, top_k,
                                            seed, lam, objective_weights],
                           [*audios, *spectrograms, clip_meta, upload], api_name="continue", concurrency_limit=None)

        # ------------------------------------------------------------------- wiring: Arena
        @_guard
        def new_pair(prompt: str, rater_id: str, request: gr.Request) -> tuple[str, str, str, str]:
            pair = arena.new_pair(who(request), prompt, rater_id)
            return str(pair.audio_a), str(pair.audio_b), pair.token, pair.prompt

        pair_btn.click(new_pair, [arena_prompt, rater_id], [audio_a, audio_b, pair_token, pair_prompt],
                       api_name="new_pair",
                       concurrency_limit=None, js=page.NEW_PAIR_JS).success(
            None, None, [reveal, reveal_text, vote_result, feedback], js=page.PAIR_READY_JS, **JS_ONLY)
        bank_btn.click(None, None, [arena_prompt], js=page.random_prompt_js(PROMPT_BANK), **JS_ONLY)

        @_guard
        def vote(pair_token: str, choice: str, listened_a: float, listened_b: float, feedback: str, rater_id: str,
                 simulated: bool, request: gr.Request) -> tuple[str, dict]:
            outcome = arena.vote(who(request), pair_token, choice, rater_id, listened_a, listened_b, feedback,
                                 simulated)
            verdict = {"a": "A is better", "b": "B is better", "tie": "a tie", "both_bad": "both are bad"}
            text = (f"### Clip A was **{html.escape(outcome.name_a)}** · Clip B was **{html.escape(outcome.name_b)}**"
                    f"\nYour vote: {verdict[outcome.choice]}. Thank you! Click **New pair** for the next one.")
            return text, {"pair_id": outcome.pair_id, "choice": outcome.choice, "model_a": outcome.model_a,
                          "model_b": outcome.model_b, "name_a": outcome.name_a, "name_b": outcome.name_b}

        gr.on([b.click for b in vote_buttons], vote,
              [pair_token, choice, listened_a, listened_b, feedback, rater_id, simulated],
              [reveal_text, vote_result], js=page.VOTE_JS, api_name="vote", concurrency_limit=None,
              show_progress="hidden").then(None, [vote_result, pair_token, reveal_text, reveal], [reveal],
                                           js=page.AFTER_VOTE_JS, **JS_ONLY)
        demo.load(None, None, [rater_id], js=page.RATER_JS, **JS_ONLY)
        demo.load(None, js=page.arena_js(arena.min_listen_s), **JS_ONLY)

        # ------------------------------------------------------------------- wiring: Leaderboard
        @_guard
        def show_leaderboard(votes: str) -> tuple[str, list[list], str | None]:
            view = leaderboard.view(votes)
            rows = [[r["rank"], f"{r['name']} ({r['model']})", round(r["rating"]),
                     f"{r['ci_low']:.0f}–{r['ci_high']:.0f}", r["votes"]] for r in view.rows]
            rows += [["–", f"{r['name']} ({r['model']})", "–", f"needs {view.min_votes}", r["votes"]]
                     for r in view.provisional]
            kind = ("from people" if view.votes == "people" else
                    "from simulated listeners (people's votes are on the People board)")
            repeats = (f" {view.repeats_left_out} vote(s) on repeated pairs (rater consistency checks) are not "
                       "counted." if view.repeats_left_out else "")
            text = (f"**{view.total_votes} vote(s) {kind}.**{repeats} Bradley–Terry ratings on the Elo scale "
                    "(the average model is 1000; +400 means 10:1 odds of being preferred), with 95 % bootstrap "
                    f"intervals (1,000 resamples). A model is ranked once it has **{view.min_votes} vote(s)**; "
                    "until then its row shows the votes collected so far.")
            return text, rows, str(view.win_rate_png) if view.win_rate_png else None

        gr.on([refresh_btn.click, leaderboard_tab.select, demo.load, board_votes.change], show_leaderboard,
              [board_votes], [board_summary, board, win_rates], api_name="leaderboard", concurrency_limit=4)

        @_guard
        def export(admin_token: str, votes: str, request: gr.Request) -> tuple[list[str], list[list]]:
            done = admin.export(who(request), admin_token, votes)
            gr.Info(f"Exported {done.count} vote(s).")
            rows = []
            for kind in ("people", "simulated"):
                for row in [*done.summary[kind]["raters"], done.summary[kind]["pooled"]]:
                    rate = "–" if row["rate"] is None else f"{row['rate']:.0%}"
                    ci = "–" if row["rate"] is None else f"{row['ci_low']:.0%}–{row['ci_high']:.0%}"
                    rows.append([kind, row["rater_id"] or "all raters (pooled)", row["agreements"], row["repeats"],
                                 rate, ci])
            return [str(done.preferences), str(done.consistency)], rows

        export_btn.click(export, [token, export_votes], [export_file, consistency], api_name="export",
                         concurrency_limit=1)
    return demo
