"""App services without gradio: registry, batched generation, arena, leaderboard, admin export.

Everything runs on the tiny random debug models (``debug:SEED`` registry paths) with clips of a
fraction of a second, so the whole file takes seconds.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from random import Random

import pytest
import torch

from app.admin import AdminService
from app.arena import ArenaService
from app.generation import GenerationRequest, GenerationService
from app.leaderboard import LeaderboardService
from app.limits import Caller, Rate, RateLimited, RateLimiter, RateLimits
from app.registry import MergeSpec, ModelRegistry, RegistryEntry, default_registry, load_source, snap_lambda
from app.store import VoteRejected, open_store
from app.transfer import export_preferences
from app.validation import collapse_whitespace
from models.debug import debug_generator
from models.errors import InputError
from models.registry import DEFAULT_DIR
from models.sampling import SamplingParams

DUR = 0.2  # seconds of audio per test clip (10 frames of the debug codec): the listening gate is its length
S1, S2 = Caller("session-1", "10.0.0.1"), Caller("session-2", "10.0.0.2")


class Clock:
    """The server's clock for votes, moved forward by hand (pairs are issued at the real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds

REGISTRY_YAML = """
models:
  - id: a
    name: Model A
    path: debug
  - id: b
    name: Model B
    path: "debug:1"
    cfg_free: true
  - id: mix
    name: A/B merge
    merge: {a: a, b: b, init: 0.25}
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> ModelRegistry:
    path = tmp_path_factory.mktemp("registry") / "registry.yaml"
    path.write_text(REGISTRY_YAML)
    return ModelRegistry.from_file(path)


@pytest.fixture
def store(tmp_path):
    with open_store(None, tmp_path / "data") as s:
        yield s


@pytest.fixture
def generation(registry, store):
    service = GenerationService(registry, store, max_batch_rows=8)
    yield service
    service.close()


# ----------------------------------------------------------------------------- registry


def test_registry_file_entries_and_lookup(registry, tmp_path):
    assert registry.ids == ["a", "b", "mix"]
    assert registry.get("mix").merge.init == 0.25 and registry.get("b").cfg_free
    assert registry.display_name("a") == "Model A" and registry.display_name("gone") == "gone"
    with pytest.raises(InputError, match="unknown model 'zzz'; this app serves: a, b, mix"):
        registry.get("zzz")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "r.json").write_text(json.dumps({"models": [{"id": "x", "path": "ckpt"}]}))
    assert ModelRegistry.from_file(tmp_path / "r.json").get("x").path == str((tmp_path / "ckpt").resolve())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [{id: a, path: debug}, {id: a, path: debug}]", "more than once"),
        ("models: [{id: a}]", "exactly one of 'path' and 'merge'"),
        ("models: [{id: 'bad id!', path: debug}]", "'id' must be"),
        ("models: [{id: a, path: debug, colour: red}]", "unknown field"),
        ("models: [{id: a, path: debug, cfg_free: 'yes'}]", "cfg_free"),
        ("models: [{id: m, merge: {a: x, b: y, init: 2}}]", "init"),
        ("models: [{id: a, path: debug}, {id: m, merge: {a: a, b: a}}, {id: n, merge: {a: m, b: a}}]",
         "itself a merge"),
        ("models: {id: a}", "list under 'models'"),
        ("models: [", "not valid YAML"),
        ("models: []", "lists no models"),
    ],
)
def test_registry_file_errors(tmp_path, text, message):
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        ModelRegistry.from_file(path)


def test_registry_loads_lazily_and_caches():
    loaded: list[str] = []

    def loader(source: str):
        loaded.append(source)
        return load_source(source)

    reg = ModelRegistry([RegistryEntry("a", "A", path="debug"), RegistryEntry("b", "B", path="debug:1")],
                        loader=loader)
    assert loaded == []
    assert reg.load("a") is reg.load("a") and loaded == ["debug"]


def test_merge_interpolates_lm_weights_and_caches_per_rounded_lambda(registry):
    a, b = registry.load("a"), registry.load("b")
    assert snap_lambda(0.51) == 0.5 and snap_lambda(0.524) == 0.5 and snap_lambda(0.53) == 0.55
    half = registry.load("mix", 0.51)
    assert registry.load("mix", 0.5) is half and ("mix", 0.5) in registry.cached_merges()
    key = next(k for k, v in a.lm.state_dict().items() if v.is_floating_point())
    wa, wb = a.lm.state_dict()[key], b.lm.state_dict()[key]
    torch.testing.assert_close(half.lm.state_dict()[key], 0.5 * wa + 0.5 * wb)
    torch.testing.assert_close(registry.load("mix", 0.0).lm.state_dict()[key], wa)
    torch.testing.assert_close(registry.load("mix", 1.0).lm.state_dict()[key], wb)
    assert registry.load("mix").meta["merge"]["lam"] == 0.25  # the entry's init
    assert half.conditioner is a.conditioner and "0.50" in half.checkpoint_hash
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        registry.load("mix", 1.5)


def test_merge_refuses_models_with_different_conditioners():
    entries = [RegistryEntry("x", "X", path="s0"), RegistryEntry("y", "Y", path="s1"),
               RegistryEntry("m", "M", merge=MergeSpec("x", "y"))]
    reg = ModelRegistry(entries, loader=lambda source: debug_generator(seed=int(source[1])))
    with pytest.raises(InputError, match="share the text conditioner and codec"):
        reg.load("m")


def test_default_registry_serves_the_embedded_default_or_says_it_is_missing():
    reg = default_registry()
    if (DEFAULT_DIR / "musicrl.json").is_file():
        assert reg.ids == ["default", "default-no-cfg"] and reg.notice == ""
        assert reg.get("default-no-cfg").cfg_free and not reg.get("default").cfg_free
    else:
        assert reg.ids == ["debug", "debug-b", "debug-merge"] and "not installed" in reg.notice


# ----------------------------------------------------------------------------- generation


BAD_INPUTS = {
    "empty prompt": (dict(prompt=""), "the prompt is empty"),
    "blank prompt": (dict(prompt="   \n "), "the prompt is empty"),
    "huge prompt": (dict(prompt="x" * 5000), "5000 characters; the maximum is 1000"),
    "binary prompt": (dict(prompt="\x00\x01\x02\xff"), "control or binary character"),
    "non-text prompt": (dict(prompt=123), "must be text"),
    "unknown model": (dict(model_id="nope"), "unknown model 'nope'"),
    "zero duration": (dict(duration=0), "duration must be > 0"),
    "long duration": (dict(duration=20), "duration 20 s exceeds this model's maximum of 10 s"),
    "huge duration": (dict(duration=1e6), "exceeds this server's maximum of 30 s"),
    "NaN duration": (dict(duration=math.nan), "finite"),
    "text duration": (dict(duration="4"), "must be a number, got str"),
    "negative cfg": (dict(cfg=-1), "CFG scale must be between 0 and 10"),
    "zero temperature": (dict(temperature=0), "temperature must be between 0.05 and 2"),
    "fractional top-k": (dict(top_k=2.5), "top-k must be a whole number"),
    "huge top-k": (dict(top_k=10**6), "top-k must be between 0 and 1000"),
    "huge seed": (dict(seed=2**40), "seed must be between -1 and"),
    "five variations": (dict(variations=5), "variations must be between 1 and 4"),
    "bool variations": (dict(variations=True), "must be a number, got bool"),
    "merge weight": (dict(model_id="mix", lam=1.5), "quality/diversity weight must be between 0 and 1"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_generation_inputs_are_validated_with_clear_messages(generation, case):
    overrides, message = BAD_INPUTS[case]
    args = dict(model_id="a", prompt="calm piano", duration=DUR) | overrides
    with pytest.raises(InputError) as info:
        generation.validate(**args)
    assert message in str(info.value)


def test_prompts_have_their_whitespace_collapsed():
    assert collapse_whitespace("  calm \n piano\t") == "calm piano" and collapse_whitespace(5) == 5


def test_validate_fills_seeds_and_forces_cfg_for_cfg_free(generation, registry):
    req = generation.validate("a", " calm  piano ", DUR, cfg=4, top_k=10, seed=41, variations=3)
    assert (req.prompt, req.seeds, req.params.cfg, req.params.top_k, req.lam) == ("calm piano", (41, 42, 43), 4, 10,
                                                                                  None)
    assert generation.validate("b", "x", DUR, cfg=4).params.cfg == 1.0  # CFG-free: no guidance
    assert registry.effective_cfg("b", 4) == 1.0 and registry.effective_cfg("a", 4) == 4.0
    assert registry.max_duration("mix") == min(registry.max_duration("a"), registry.max_duration("b"))
    assert generation.validate("mix", "x", DUR, lam=0.33).lam == 0.35
    assert generation.validate("mix", "x", DUR).lam == 0.25
    random_seed = generation.validate("a", "x", DUR, seed=-1, variations=2).seeds
    assert random_seed[1] == random_seed[0] + 1


def _request(service: GenerationService, prompt: str, seed: int, model: str = "a", duration: float = DUR,
             seeds: tuple[int, ...] | None = None) -> GenerationRequest:
    return service.request(model, prompt, duration, SamplingParams(cfg=3.0, top_k=50), seeds or (seed,))


def test_generate_batch_groups_equal_keys_into_one_call_and_rows_are_independent(registry, store):
    service = GenerationService(registry, store, autostart=False)
    requests = [_request(service, "calm piano", 1), _request(service, "fast techno drums", 2),
                _request(service, "calm piano", 3, duration=0.1)]
    batched = service.generate_batch(requests)
    assert service.stats.rows == [2, 1]  # two generate calls: the 0.1 s request has its own key
    alone = service.generate_batch([requests[1]])[0]
    torch.testing.assert_close(batched[1][0].audio, alone[0].audio, atol=1e-5, rtol=0)  # independent of batch mates
    assert batched[2][0].audio.shape[-1] * 2 == batched[0][0].audio.shape[-1]
    service.close()


def test_a_failing_group_fails_only_its_own_requests(store, registry):
    broken = ModelRegistry([*registry.entries, RegistryEntry("broken", "Broken", path="/no/such/model")])
    service = GenerationService(broken, store, autostart=False)
    with pytest.raises(InputError, match="neither a known name"):  # a model that fails to load: at request time
        _request(service, "x", 2, model="broken")
    good = _request(service, "x", 1)
    bad = GenerationRequest("broken", DUR, good.plan)  # and one that fails in the worker fails its group only
    results = service.generate_batch([good, bad])
    assert isinstance(results[1], InputError) and "neither a known name" in str(results[1])
    assert len(results[0]) == 1 and results[0][0].audio.shape[0] == 1
    service.close()


def test_worker_batches_waiting_requests_up_to_max_rows(registry, store):
    service = GenerationService(registry, store, max_batch_rows=3, autostart=False)
    jobs = [service.submit(_request(service, f"prompt {i}", i)) for i in range(4)]
    jobs.append(service.submit(_request(service, "two rows", 0, seeds=(7, 8))))
    jobs.append(service.submit(_request(service, "other", 9, model="b")))
    service.start()
    results = [service.wait(job) for job in jobs]
    assert service.stats.rows == [3, 3, 1]  # 3 one-row jobs; then 1 + the 2-row job; then model b alone
    assert [len(r) for r in results] == [1, 1, 1, 1, 2, 1]
    service.close()


def test_generate_stores_content_addressed_clips_and_spectrograms(generation, store):
    progress: list[tuple[float, str]] = []
    clips = generation.generate("a", "calm piano", DUR, seed=5, variations=2,
                                progress=lambda f, d: progress.append((f, d)))
    assert [c.clip.seed for c in clips] == [5, 6] and progress[-1] == (1.0, "saving")
    first = clips[0].clip
    assert first.audio_file.is_file() and first.audio_file.name == f"{first.audio_sha256}.wav"
    assert first.params["cfg"] == 3.0 and first.params["source"] == "generate" and first.model_id == "a"
    assert clips[0].spectrogram.read_bytes()[:4] == b"\x89PNG"
    again = generation.generate("a", "calm piano", DUR, seed=5, variations=2)
    assert again[0].clip.audio_sha256 == first.audio_sha256  # same request, same audio, stored once
    assert store.get_clip(first.id) == first


# ----------------------------------------------------------------------------- arena


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def arena(registry, generation, store, clock):
    return ArenaService(registry, generation, store, min_listen_s=5.0, duration=DUR, rng=Random(0),
                        limiter=RateLimiter(RateLimits.unlimited()), clock=clock)


def test_arena_draws_distinct_models_uniformly_with_random_sides(arena):
    draws = Counter(arena.draw_models() for _ in range(3000))
    assert set(draws) == {(x, y) for x in "a b mix".split() for y in "a b mix".split() if x != y}
    assert max(draws.values()) / min(draws.values()) < 1.3  # 6 ordered pairs, ~500 each


def test_arena_pair_vote_token_gate_replay_and_reveal(arena, store, clock):
    pair = arena.new_pair(S1, "")
    assert pair.prompt in arena.prompts and pair.audio_a != pair.audio_b and pair.audio_a.is_file()
    pair_id = pair.token.split(".")[0]
    record = store.get_pair(pair_id)
    assert record.session_id == "session-1" and pair.duration_a == pair.duration_b == DUR
    models = {store.get_clip(record.clip_a).model_id, store.get_clip(record.clip_b).model_id}
    assert len(models) == 2
    with pytest.raises(VoteRejected, match=r"came 0\.\d s after") as info:  # the clips last 0.2 s: not yet heard
        arena.vote(S1, pair.token, "a", "rater", DUR, DUR)
    assert info.value.code == "too_soon"
    clock.advance(1.0)
    with pytest.raises(VoteRejected, match=r"at least 5 s \(or the whole clip when shorter\)") as info:
        arena.vote(S1, pair.token, "a", "rater", 0.19, DUR)
    assert info.value.code == "not_listened" and store.vote_count() == 0
    with pytest.raises(VoteRejected, match="not possible"):
        arena.vote(S1, pair.token, "a", "rater", 1e9, DUR)
    with pytest.raises(VoteRejected, match="another session"):
        arena.vote(S2, pair.token, "a", "rater", DUR, DUR)
    with pytest.raises(VoteRejected, match="does not exist"):  # the public half alone, or a wrong secret
        arena.vote(S1, pair_id, "a", "rater", DUR, DUR)
    with pytest.raises(VoteRejected, match="does not exist"):
        arena.vote(S1, pair_id + ".x" + pair.token.split(".")[1][1:], "a", "rater", DUR, DUR)
    outcome = arena.vote(S1, pair.token, "b", " rater ", DUR, 1.0, " nice \n\n try again ")
    assert {outcome.model_a, outcome.model_b} == models and outcome.name_a == arena.registry.display_name(
        outcome.model_a)
    with pytest.raises(VoteRejected, match="already been voted"):
        arena.vote(S1, pair.token, "a", "rater", DUR, DUR)
    row = next(export_preferences(store))
    assert (row["rater_id"], row["feedback"], row["listened_b_s"]) == ("rater", "nice\n\ntry again", 1.0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("feedback", "fine \x1b[2J cleared", "feedback contains 1 control"),
        ("feedback", "nul\x00", "feedback contains 1 control"),
        ("feedback", "evil \u202e txt.exe", "feedback contains 1 control"),
        ("feedback", "x" * 2001, "feedback has 2001 characters; the maximum is 2000"),
        ("rater_id", "rater one", "rater id must be"),
        ("rater_id", "../../etc", "rater id must be"),
        ("rater_id", "r" * 65, "rater id must be"),
        ("rater_id", "\x1b[31mred", "rater id must be"),
    ],
)
def test_vote_texts_are_cleaned_like_prompts(arena, store, clock, field, value, message):
    pair = arena.new_pair(S1, "calm piano")
    clock.advance(1.0)
    args = {"feedback": "", "rater_id": "r-1"} | {field: value}
    with pytest.raises(InputError, match=message):
        arena.vote(S1, pair.token, "a", args["rater_id"], DUR, DUR, args["feedback"])
    assert store.vote_count() == 0


def test_arena_refuses_bad_requests(arena, registry, generation, store):
    with pytest.raises(InputError, match="no session"):
        arena.new_pair(Caller("", "10.0.0.1"), "x")
    with pytest.raises(InputError, match="control or binary"):
        arena.new_pair(S1, "\x00\x07")
    with pytest.raises(VoteRejected, match="no pair"):
        arena.vote(S1, "", "a")
    lonely = ArenaService(ModelRegistry([registry.get("a")]), generation, store)
    assert "compares two different models" in lonely.unavailable_reason
    with pytest.raises(InputError, match="compares two different models"):
        lonely.new_pair(S1, "x")


def test_rate_limits_per_session_and_per_address(registry, generation, store):
    limits = RateLimits(pair=(Rate(2, 60.0), Rate(3, 60.0)), vote=(Rate(1, 60.0), Rate(0, 60.0)))
    arena = ArenaService(registry, generation, store, duration=DUR, limiter=RateLimiter(limits))
    arena.new_pair(S1, "x")
    arena.new_pair(S1, "x")
    with pytest.raises(RateLimited, match="too many new pairs from this session"):
        arena.new_pair(S1, "x")
    neighbour = Caller("session-3", S1.address)  # a new session from the same address
    arena.new_pair(neighbour, "x")
    with pytest.raises(RateLimited, match="from your network address") as info:
        arena.new_pair(neighbour, "x")
    assert 0 < info.value.retry_after_s <= 60
    with pytest.raises(VoteRejected):
        arena.vote(S2, "forged.token", "a")  # counted, then refused
    with pytest.raises(RateLimited, match="too many votes"):
        arena.vote(S2, "forged.token", "a")
    assert store.counts()["pairs"] == 3 and store.vote_count() == 0


# ----------------------------------------------------------------------------- leaderboard and admin


def test_leaderboard_ratings_threshold_and_win_rate_picture(arena, registry, store, clock):
    board = LeaderboardService(store, registry, min_votes=2, n_boot=200)
    empty = board.view()
    assert empty.total_votes == 0 and empty.rows == [] and len(empty.provisional) == 3
    assert empty.win_rate_png is None
    for i in range(3):
        pair = arena.new_pair(Caller(f"s{i}", "10.0.0.9"), "calm piano")
        clock.advance(1.0)
        arena.vote(Caller(f"s{i}", "10.0.0.9"), pair.token, "a", None, DUR, DUR)
    view = board.view()
    assert view.total_votes == 3 and board.view() is view  # cached until the next vote
    votes = {r["model"]: r["votes"] for r in view.rows + view.provisional}
    assert sum(votes.values()) == 6
    assert all(r["votes"] >= 2 for r in view.rows) and all(r["votes"] < 2 for r in view.provisional)
    assert [r["rank"] for r in view.rows] == list(range(1, len(view.rows) + 1))
    assert all(r["ci_low"] <= r["rating"] <= r["ci_high"] for r in view.rows)
    assert view.win_rate_png.read_bytes()[:4] == b"\x89PNG"


def test_admin_export_needs_the_token_and_limits_guesses(arena, store, clock, tmp_path):
    pair = arena.new_pair(S1, "calm piano")
    clock.advance(1.0)
    arena.vote(S1, pair.token, "tie", "r", DUR, DUR)
    with pytest.raises(InputError, match="disabled"):
        AdminService(store, None).export(S1, "anything")
    admin = AdminService(store, "secret", limiter=RateLimiter(RateLimits(admin=(Rate(0, 1.0), Rate(2, 600.0)))))
    for _ in range(2):
        with pytest.raises(InputError, match="wrong admin token"):
            admin.export(S1, "guess")
    with pytest.raises(RateLimited, match="too many wrong admin tokens"):
        admin.export(Caller("another-session", S1.address), "secret")  # the address is locked
    done = admin.export(S2, "secret")  # another address is not
    path = done.preferences
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert done.count == 1 and rows[0]["outcome"] == "tie" and rows[0]["pair_id"] == pair.token.split(".")[0]
    assert (rows[0]["simulated"], rows[0]["repeat_of"], rows[0]["swapped"]) == (False, None, False)
    assert not path.is_relative_to(store.data_dir) and oct(path.parent.stat().st_mode)[-3:] == "700"
    assert rows[0]["chosen_audio"].startswith("audio/") and str(store.data_dir) not in path.read_text()
    assert json.loads(done.consistency.read_text()) == done.summary and done.consistency.parent == path.parent
    assert oct(done.consistency.stat().st_mode)[-3:] == "600"
    with pytest.raises(InputError, match="votes must be one of"):
        admin.export(S2, "secret", votes="robots")
    second = admin.export(S2, "secret").preferences
    assert not path.exists() and second.exists()  # the previous export is removed
    admin.close()
    assert not second.exists()


@pytest.mark.skipif(not os.environ.get("MUSICRL_TEST_POSTGRES_URL"),
                    reason="MUSICRL_TEST_POSTGRES_URL is not set (CI sets it with .ci/postgres.sh)")
def test_arena_and_leaderboard_on_postgresql(registry, tmp_path):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = os.environ["MUSICRL_TEST_POSTGRES_URL"]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    try:
        with open_store(url, tmp_path / "pg") as store:
            generation = GenerationService(registry, store)
            clock = Clock()
            arena = ArenaService(registry, generation, store, min_listen_s=5.0, duration=DUR, rng=Random(1),
                                 clock=clock)
            pair = arena.new_pair(S1, "calm piano")
            clock.advance(1.0)
            with pytest.raises(VoteRejected, match="at least 5 s"):
                arena.vote(S1, pair.token, "a", None, 0.1, DUR)
            arena.vote(S1, pair.token, "b", "r", DUR, DUR)
            with pytest.raises(VoteRejected, match="already been voted"):
                arena.vote(S1, pair.token, "a", "r", DUR, DUR)
            assert LeaderboardService(store, registry, min_votes=1, n_boot=100).view().total_votes == 1
            generation.close()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
