"""The app's steerable (CLP) entries and best-of-N: the registry, the generation service, the rate limits and
the public API on a live server.

Everything runs on the debug stack (8 kHz) with a tiny CLP checkpoint (two objectives; the quality expert
nudged away from the adherence one) and tiny untrained scorers at 8 kHz, with 0.2 s clips.
"""

from __future__ import annotations

import hashlib
import socket
import wave

import pytest
import torch
import yaml
from gradio_client import Client
from gradio_client.exceptions import AppError

from app.arena import ArenaService
from app.best_of import BestOfScorers
from app.generation import GenerationService, ServiceError
from app.limits import Caller, Rate, RateLimited, RateLimiter, RateLimits
from app.main import serve
from app.registry import ModelRegistry, snap_weights
from app.services import build_services
from app.store import open_store
from app.ui import model_table
from models.audio_tower import FrontendConfig, TowerConfig
from models.checkpoint import save_checkpoint
from models.debug import debug_generator, tiny_embedder_config
from models.embedder import TextAudioEmbedder
from models.errors import InputError
from models.quality import QualityConfig, QualityModel
from models.steerable import SteerableLM, load_steerable
from musicrl.best_of_n import candidate_seeds

DUR = 0.2
API_DUR = 0.5  # the page's duration slider starts at 0.5 s
ME = Caller("session-1", "10.0.0.1")
OBJECTIVES = ("adherence", "quality")


@pytest.fixture(scope="module")
def clp_dir(tmp_path_factory):
    """A CLP checkpoint of the debug model: experts start equal, then the quality expert moves by N(0, 0.05^2)."""
    path = tmp_path_factory.mktemp("clp") / "model"
    gen = debug_generator()
    steer = SteerableLM(gen.lm, OBJECTIVES)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in steer.experts["quality"]:
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    steer.set_weights(steer.weights)  # lm.safetensors holds theta at uniform w, as musicrl train clp writes it
    save_checkpoint(gen, path)
    steer.save(path)
    return path


@pytest.fixture(scope="module")
def scorer_dirs(tmp_path_factory):
    """Untrained tiny embedder and quality model at the debug model's 8 kHz."""
    root = tmp_path_factory.mktemp("scorers")
    torch.manual_seed(0)
    TextAudioEmbedder(tiny_embedder_config(sample_rate=8000)).save(root / "embedder")
    cfg = QualityConfig(FrontendConfig(sample_rate=8000, n_mels=8, chroma=False), TowerConfig(widths=[4], out=4))
    QualityModel(cfg).save(root / "quality")
    return root / "embedder", root / "quality"


@pytest.fixture(scope="module")
def registry_file(tmp_path_factory, clp_dir):
    path = tmp_path_factory.mktemp("registry") / "registry.yaml"
    path.write_text(
        f"models:\n  - {{id: plain, name: Plain, path: debug}}\n"
        f"  - {{id: clp, name: Steerable (CLP), path: '{clp_dir}', steerable: true}}\n"
    )
    return path


@pytest.fixture(scope="module")
def registry(registry_file):
    return ModelRegistry.from_file(registry_file)


@pytest.fixture
def store(tmp_path):
    with open_store(None, tmp_path / "data") as s:
        yield s


@pytest.fixture
def scorers(scorer_dirs):
    return BestOfScorers(*scorer_dirs)


@pytest.fixture
def generation(registry, store, scorers):
    service = GenerationService(registry, store, scorers=scorers, max_batch_rows=8)
    yield service
    service.close()


# ----------------------------------------------------------------------------- steerable registry entries


def test_snap_weights_by_hand():
    """Each weight to the 0.05 grid, then scaled to sum 1: (0.7, 0.3) stays; (0.33, 0.66) -> (0.35, 0.65);
    (0.2, 0.2) -> (0.5, 0.5); a missing objective weighs 0; None = uniform; 0.02 snaps to 0."""
    assert snap_weights(OBJECTIVES, {"adherence": 0.7, "quality": 0.3}) == (("adherence", 0.7), ("quality", 0.3))
    assert snap_weights(OBJECTIVES, [0.33, 0.66]) == (("adherence", 0.35), ("quality", 0.65))
    assert (
        snap_weights(OBJECTIVES, [0.2, 0.2]) == snap_weights(OBJECTIVES, None) == (("adherence", 0.5), ("quality", 0.5))
    )
    assert snap_weights(OBJECTIVES, {"quality": 1}) == (("adherence", 0.0), ("quality", 1.0))
    assert snap_weights(OBJECTIVES, {"adherence": 0.02, "quality": 0.5}) == (("adherence", 0.0), ("quality", 1.0))


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"tempo": 1.0}, "unknown objective 'tempo'; this model steers adherence, quality"),
        ({"adherence": -0.5, "quality": 1}, "the weight of adherence must be between 0 and 1, got -0.5"),
        ({"adherence": 0, "quality": 0}, "at least one objective weight must be 0.05 or more"),
        ({"adherence": 0.01}, "at least one objective weight must be 0.05 or more"),
        ({"adherence": float("nan")}, "the weight of adherence must be a finite number"),
        ({"adherence": "1"}, "the weight of adherence must be a number, got str"),
        ([1.0], "give 2 objective weights (adherence, quality), got 1"),
        ("adherence=1", "the objective weights must be {objective: weight}"),
    ],
)
def test_bad_weights_are_refused_with_one_line(registry, weights, message):
    with pytest.raises(InputError) as info:
        registry.steer_weights("clp", weights)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_steerable_entry_materialises_each_w_once_and_its_hash_names_it(registry, clp_dir):
    assert registry.objectives("clp") == OBJECTIVES and registry.objectives("plain") == ()
    uniform = registry.load("clp")
    snapped = registry.steer_weights("clp", {"adherence": 0.51, "quality": 0.49})
    assert registry.load("clp", weights=snapped) is uniform  # snapped to uniform, cached
    assert ("clp", (("adherence", 0.5), ("quality", 0.5))) in registry.cached_merges()
    vertex = registry.load("clp", weights=registry.steer_weights("clp", {"adherence": 1.0}))
    assert vertex.checkpoint_hash != uniform.checkpoint_hash and vertex.meta["steer"] == {
        "adherence": 1.0,
        "quality": 0.0,
    }
    _, steer = load_steerable(clp_dir)
    name, param = next(iter(vertex.lm.named_parameters()))
    torch.testing.assert_close(param, steer.experts["adherence"][steer.names.index(name)])
    with pytest.raises(InputError, match="'plain' is not steerable"):
        registry.steer_weights("plain", {"adherence": 1.0})
    assert registry.steer_weights("plain", {}) is None and registry.steer_weights("plain", None) is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{id: s, merge: {a: debug, b: 'debug:1'}, steerable: true}", "a merge entry cannot be steerable"),
        ("{id: s, path: debug, steerable: 'yes'}", "'cfg_free' and 'steerable' must be true or false"),
    ],
)
def test_bad_steerable_registry_entries(entry, message):
    with pytest.raises(InputError, match=message):
        ModelRegistry.from_mapping({"models": [{"id": "x", "path": "debug"}, yaml.safe_load(entry)]})


def test_a_steerable_entry_without_a_clp_checkpoint_is_refused_in_one_line():
    registry = ModelRegistry.from_mapping({"models": [{"id": "s", "path": "debug", "steerable": True}]})
    with pytest.raises(InputError, match="debug is not a steerable model"):
        registry.load("s")


def test_generate_at_two_weights_differs_the_same_weights_reproduce_and_clips_record_them(generation):
    def make(weights):
        (clip,) = generation.generate("clp", "calm piano", DUR, seed=3, weights=weights)
        return clip.clip

    a, b = make({"adherence": 1.0, "quality": 0.0}), make({"adherence": 0.0, "quality": 1.0})
    again = make({"adherence": 0.5, "quality": 0.0})  # the same w as a after scaling to sum 1
    assert a.audio_sha256 != b.audio_sha256 and a.checkpoint_hash != b.checkpoint_hash
    assert again.audio_sha256 == a.audio_sha256 and again.checkpoint_hash == a.checkpoint_hash
    assert a.params["weights"] == {"adherence": 1.0, "quality": 0.0}
    assert b.params["weights"] == {"adherence": 0.0, "quality": 1.0}
    with pytest.raises(InputError, match="unknown objective 'tempo'"):
        generation.generate("clp", "calm piano", DUR, weights={"tempo": 1.0})


def test_the_arena_serves_a_steerable_entry_at_uniform_weights(registry, generation, store):
    arena = ArenaService(
        registry, generation, store, min_listen_s=0.0, duration=DUR, limiter=RateLimiter(RateLimits.unlimited())
    )
    pair = arena.new_pair(ME, "calm piano")
    clips = [
        store.get_clip(store.get_pair(pair.token.split(".")[0]).clip_a),
        store.get_clip(store.get_pair(pair.token.split(".")[0]).clip_b),
    ]
    (clp,) = [c for c in clips if c.model_id == "clp"]
    assert clp.params["weights"] == {"adherence": 0.5, "quality": 0.5}
    assert clp.checkpoint_hash == registry.load("clp").checkpoint_hash


# ----------------------------------------------------------------------------- best-of-N


def test_best_of_keeps_the_argmax_records_every_candidate_and_the_cost(generation, store):
    clips = generation.generate("plain", "calm piano", DUR, seed=5, variations=2, best_of=4, reward="quality")
    assert [c.clip.seed for c in clips] == [5, 6]
    for clip in clips:
        picked = clip.clip.params["best_of"]
        assert picked["n"] == 4 and picked["reward"] == "quality" and len(picked["candidate_rewards"]) == 4
        assert picked["reward_value"] == max(picked["candidate_rewards"])
        assert picked["reward_value"] == picked["candidate_rewards"][picked["chosen"]]
        assert picked["candidate_seeds"] == candidate_seeds(clip.clip.seed, 4)
        assert picked["chosen_seed"] == picked["candidate_seeds"][picked["chosen"]]
        assert picked["cost"]["candidates"] == 4 and picked["cost"]["total_s"] > 0
    assert generation.stats.rows == [8]  # 2 clips x 4 candidates, sampled as one batch of 8 rows
    # the kept clip is what plain generation with the chosen candidate's seed makes
    picked = clips[1].clip.params["best_of"]
    (plain,) = generation.generate("plain", "calm piano", DUR, seed=picked["chosen_seed"])
    with wave.open(str(plain.clip.audio_file)) as w1, wave.open(str(clips[1].clip.audio_file)) as w2:
        a, b = (torch.frombuffer(bytearray(w.readframes(w.getnframes())), dtype=torch.int16) for w in (w1, w2))
    assert (a.int() - b.int()).abs().max() <= 2  # equal codes; decoding in another batch size rounds apart


def test_best_of_n_is_checked_by_the_server(generation):
    with pytest.raises(InputError, match="best of N must be between 1 and 8, got 9"):
        generation.validate("plain", "x", DUR, best_of=9, reward="quality")
    with pytest.raises(InputError, match="best of N must be a whole number"):
        generation.validate("plain", "x", DUR, best_of=2.5)
    with pytest.raises(InputError, match="unknown best-of reward 'preference'; choose from adherence, quality"):
        generation.validate("plain", "x", DUR, best_of=2, reward="preference")  # no reward model given
    assert generation.validate("plain", "x", DUR, best_of=1, reward="nonsense").best_of == 1  # off: not read
    assert generation.validate("plain", "x", DUR, best_of=2).reward == "adherence"  # the first choice


def test_best_of_is_refused_when_the_scorers_take_another_sample_rate(registry, store, tmp_path):
    TextAudioEmbedder(tiny_embedder_config(sample_rate=16000)).save(tmp_path / "emb16k")
    service = GenerationService(registry, store, scorers=BestOfScorers(tmp_path / "emb16k"), autostart=False)
    with pytest.raises(InputError) as info:
        service.validate("plain", "x", DUR, best_of=2, reward="adherence")
    assert str(info.value) == (
        "best-of-N by adherence is not available for this model: the embedder expects "
        "16000 Hz audio; the model makes 8000 Hz"
    )
    assert service.validate("plain", "x", DUR, best_of=1).best_of == 1  # plain generation is unaffected
    service.close()


def test_best_of_n_costs_n_against_the_rate_limit_and_the_queue(registry, store, scorers):
    limiter = RateLimiter(RateLimits(generate=(Rate(10, 60.0), Rate(0, 60.0))))
    service = GenerationService(registry, store, scorers=scorers, limiter=limiter)
    with pytest.raises(InputError, match="unknown best-of reward"):  # refused: 1, like any refused request
        service.generate("plain", "x", DUR, best_of=8, reward="tempo", caller=ME)
    service.generate("plain", "x", DUR, best_of=8, reward="quality", caller=ME)  # 1 + 8 = 9 of 10
    service.generate("plain", "x", DUR, caller=ME)  # 10 of 10
    with pytest.raises(RateLimited, match="too many generation requests from this session"):
        service.generate("plain", "x", DUR, caller=ME)
    service.close()

    queue = GenerationService(registry, store, scorers=scorers, autostart=False, max_pending=8)
    job = queue.submit(queue.validate("plain", "x", DUR, best_of=8, reward="quality"))
    with pytest.raises(ServiceError, match="busy"):  # the queue holds 8 units: the best-of-8 request fills it
        queue.submit(queue.validate("plain", "x", DUR))
    queue.close()
    with pytest.raises(ServiceError):
        job.future.result(timeout=1)


def test_rate_limiter_cost_by_hand():
    """Rate(5 per 60 s). t=0: cost 3 admitted (3 used). t=10: cost 3 refused (3 + 3 > 5); the earliest it fits
    is when the first t=0 entry leaves, at t=60: wait 50 s. cost 2 admitted (5 used). cost 6 never fits."""
    now = [0.0]
    limiter = RateLimiter(RateLimits(generate=(Rate(5, 60.0), Rate(0, 1.0))), clock=lambda: now[0])
    limiter.hit("generate", ME, cost=3)
    now[0] = 10.0
    with pytest.raises(RateLimited) as info:
        limiter.hit("generate", ME, cost=3)
    assert info.value.retry_after_s == pytest.approx(50.0)
    limiter.hit("generate", ME, cost=2)
    with pytest.raises(RateLimited, match="counts as 6 generation requests, more than this session may make"):
        limiter.hit("generate", ME, cost=6)
    with pytest.raises(ValueError):
        limiter.hit("generate", ME, cost=0)


def test_max_best_of_is_capped_at_the_rate_limit_and_checked(tmp_path):
    services = build_services(
        registry=None, data_dir=tmp_path, limits=RateLimits(generate=(Rate(4, 60.0), Rate(60, 60.0)))
    )
    try:
        assert services.generation.scorers.max_n == 4  # a best-of-8 request could never be admitted
    finally:
        services.close()
    with pytest.raises(InputError, match="--max-best-of must be a whole number from 1 to 64"):
        BestOfScorers(max_n=0)
    with pytest.raises(InputError, match="--reward-model /nonexistent is not a directory"):
        BestOfScorers(reward_model="/nonexistent")


# ----------------------------------------------------------------------------- the public API


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, registry_file, scorer_dirs):
    root = tmp_path_factory.mktemp("app")
    running = serve(
        "127.0.0.1",
        free_port(),
        None,
        registry_file,
        root / "data",
        scorers=BestOfScorers(*scorer_dirs),
        limits=RateLimits.unlimited(),
        block=False,
        quiet=True,
    )
    yield running
    running.close()


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.url, verbose=False)


def _generate(client, model="plain", seed=7, variations=1, best_of=1, reward="adherence", weights=None):
    return client.predict(
        "calm piano",
        model,
        API_DUR,
        variations,
        3.0,
        1.0,
        50,
        seed,
        0.5,
        best_of,
        reward,
        weights,
        api_name="/generate",
    )


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_models_lists_objectives_and_best_of_rewards(server, client):
    table = model_table(server.services)
    assert table["clp"]["steer"] == list(OBJECTIVES) and table["plain"]["steer"] == []
    assert table["plain"]["best_of"] == ["adherence", "quality", "adherence+quality"]
    assert "steerable (CLP)" in table["clp"]["notes"]
    assert client.predict(api_name="/models")[1]["clp"]["steer"] == list(OBJECTIVES)


def test_api_steers_by_objective_weights(client):
    a = _generate(client, "clp", weights={"adherence": 1.0, "quality": 0.0})
    b = _generate(client, "clp", weights={"adherence": 0.0, "quality": 1.0})
    again = _generate(client, "clp", weights={"adherence": 1.0, "quality": 0.0})
    assert _sha(a[0]) != _sha(b[0]) and _sha(a[0]) == _sha(again[0])
    assert a[-1]["weights"] == a[-1]["clips"][0]["params"]["weights"] == {"adherence": 1.0, "quality": 0.0}
    assert _generate(client, "clp")[-1]["weights"] == {"adherence": 0.5, "quality": 0.5}  # no weights: uniform
    for weights, message in [
        ({"tempo": 1}, "unknown objective 'tempo'"),
        ({"adherence": -1}, "the weight of adherence must be between 0 and 1"),
        ({"adherence": 0, "quality": 0}, "at least one objective weight must be 0.05 or more"),
    ]:
        with pytest.raises(AppError, match=message):
            _generate(client, "clp", weights=weights)
    with pytest.raises(AppError, match="'plain' is not steerable"):
        _generate(client, "plain", weights={"adherence": 1})


def test_api_best_of_n_reports_rewards_choice_and_cost(client):
    out = _generate(client, best_of=4, reward="adherence+quality", variations=2)
    meta = out[-1]
    assert meta["best_of"]["n"] == 4 and meta["best_of"]["candidates"] == 8 and meta["best_of"]["seconds"] > 0
    for clip in meta["clips"]:
        picked = clip["params"]["best_of"]
        assert picked["reward"] == "adherence+quality" and len(picked["candidate_rewards"]) == 4
        assert picked["reward_value"] == max(picked["candidate_rewards"])
        assert picked["reward_value"] == picked["candidate_rewards"][picked["chosen"]]
    plain = _generate(client, best_of=1)[-1]
    assert "best_of" not in plain and "best_of" not in plain["clips"][0]["params"]
    with pytest.raises(AppError, match="greater than maximum value 8"):
        _generate(client, best_of=16)
    with pytest.raises(AppError, match="not in the list of choices|unknown best-of reward"):
        _generate(client, best_of=2, reward="preference")


def test_old_clients_may_leave_the_new_parameters_out(client):
    meta = client.predict("calm piano", "plain", API_DUR, 1, 3.0, 1.0, 50, 1, 0.5, api_name="/generate")[-1]
    assert meta["clips"][0]["seed"] == 1 and "best_of" not in meta
