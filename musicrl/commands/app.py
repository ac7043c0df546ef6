"""``musicrl app``: serve the Gradio app (Generate, Arena, Leaderboard) until Ctrl-C.

With no flags it serves the embedded default model (or, in a checkout without it, the debug models
with a notice) on http://127.0.0.1:7860, storing clips and votes under ``data/app``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from models.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="serve the web app: generate, rate blind A/B pairs, leaderboard",
                       description="Serve the web app. Scripted clients use gradio_client with the API names "
                                   "generate, new_pair, vote, leaderboard and models (see README). The registry "
                                   "file is re-read when it changes, so models can be added while it runs.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="TCP port, 1..65535")
    p.add_argument("--db", default=None,
                   help="database URL: sqlite:///FILE or postgresql+psycopg://USER:PASS@HOST:PORT/DB "
                        "(default: SQLite in WAL mode under --data-dir)")
    p.add_argument("--registry", type=Path, default=None,
                   help="model registry file (YAML/JSON; see app/registry.py); default: the embedded default")
    p.add_argument("--data-dir", type=Path, default=Path("data/app"),
                   help="clips (content-addressed WAVs), their pictures and the SQLite store (default: data/app); "
                        "only the clips and pictures are ever served")
    p.add_argument("--min-listen", type=float, default=5.0,
                   help="seconds of each arena clip a listener must play before voting (default 5)")
    p.add_argument("--admin-token", default=os.environ.get("MUSICRL_ADMIN_TOKEN"),
                   help="enables the UI's export button (default: $MUSICRL_ADMIN_TOKEN; off when unset)")
    p.add_argument("--max-batch", type=int, default=16,
                   help="most clips generated in one batch across users (1 = no cross-user batching)")
    p.add_argument("--min-votes", type=int, default=30, help="votes a model needs before it is ranked")
    p.add_argument("--arena-duration", type=float, default=6.0, help="seconds of each arena clip (default 6)")
    p.add_argument("--repeat-share", type=float, default=0.1,
                   help="probability that a rater's new pair replays one they already judged, sides swapped, to "
                        "measure their self-agreement (default 0.1; 0 = never)")
    p.add_argument("--no-rate-limits", action="store_true",
                   help="admit any number of requests per session and address (benchmarks, private servers)")
    p.add_argument("--trust-forwarded-for", action="store_true",
                   help="take each client's address from X-Forwarded-For (only behind a reverse proxy that sets it)")
    p.add_argument("--max-best-of", type=int, default=8,
                   help="largest N of best-of-N in the Generate tab (default 8; 1 = off); a best-of-N request counts "
                        "as N against the generation rate limit")
    p.add_argument("--embedder", default="",
                   help="text/audio embedder directory scoring best-of-N adherence (default: the shipped one, 16 kHz)")
    p.add_argument("--quality", default="",
                   help="quality model directory scoring best-of-N quality (default: the shipped one, 16 kHz)")
    p.add_argument("--reward-model", default="",
                   help="a preference reward model directory (musicrl train reward-model): adds the 'preference' "
                        "reward to best-of-N")
    p.add_argument("--no-stream", dest="stream", action="store_false",
                   help="do not play clip 1 in the Generate tab while it is made (the page then plays clips when "
                        "they are done; the server decodes no chunks)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from app.best_of import BestOfScorers
    from app.limits import RateLimits
    from app.main import serve

    if not 0 < args.port < 65536:
        raise InputError(f"--port must be in 1..65535, got {args.port}")
    if args.registry is not None and not args.registry.is_file():
        raise InputError(f"--registry {args.registry} is not a file")
    serve(args.host, args.port, args.db, args.registry, args.data_dir, min_listen=args.min_listen,
          admin_token=args.admin_token, max_batch=args.max_batch, min_votes=args.min_votes,
          arena_duration=args.arena_duration, limits=RateLimits.unlimited() if args.no_rate_limits else None,
          trust_forwarded_for=args.trust_forwarded_for, repeat_share=args.repeat_share,
          scorers=BestOfScorers(args.embedder, args.quality, args.reward_model, max_n=args.max_best_of),
          stream=args.stream, torch_threads=args.threads, block=True)
    return 0
