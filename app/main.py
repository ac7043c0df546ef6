"""Start the app: open the store, build the services, build the page, launch it.

``serve(...)`` is what ``musicrl app`` runs; tests and benchmarks call it with ``block=False`` and
get a :class:`RunningApp` to close. Nothing here is global: one call builds one set of services.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from app.registry import ModelRegistry, registry_from
from app.service import AdminService, ArenaService, GenerationService, LeaderboardService
from app.store import Store
from models.errors import InputError

DEFAULT_DATA_DIR = Path("data/app")


@dataclass
class AppServices:
    """Everything the UI needs, built once per server."""

    registry: ModelRegistry
    store: Store
    generation: GenerationService
    arena: ArenaService
    leaderboard: LeaderboardService
    admin: AdminService
    browser_secret: str  # encrypts the rater id kept in each browser's localStorage

    def close(self) -> None:
        self.generation.close()
        self.store.close()


def _browser_secret(data_dir: Path) -> str:
    """A random secret kept in the data dir, so rater ids in browsers survive restarts."""
    path = data_dir / "browser_secret"
    if not path.is_file():
        tmp = path.with_name(f".browser_secret.{os.getpid()}")
        tmp.write_text(secrets.token_hex(16))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return path.read_text().strip()


def build_services(
    db: str | None = None,
    registry: str | Path | ModelRegistry | None = None,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    *,
    min_listen: float = 5.0,
    admin_token: str | None = None,
    max_batch: int = 16,
    min_votes: int = 30,
    arena_duration: float = 6.0,
) -> AppServices:
    """Open the store (SQLite in ``data_dir`` unless ``db`` is a URL) and build the services."""
    from musicrl.commands.prefs import open_prefs_store

    if not min_listen >= 0:
        raise InputError(f"--min-listen must be >= 0 seconds, got {min_listen}")
    if max_batch < 1:
        raise InputError(f"--max-batch must be >= 1, got {max_batch}")
    if min_votes < 0:
        raise InputError(f"--min-votes must be >= 0, got {min_votes}")
    if not arena_duration > 0:
        raise InputError(f"--arena-duration must be > 0 seconds, got {arena_duration}")
    models = registry if isinstance(registry, ModelRegistry) else registry_from(registry)
    data_dir = Path(data_dir).expanduser().resolve()
    store = open_prefs_store(db, data_dir)
    generation = GenerationService(models, store, max_batch_rows=max_batch)
    return AppServices(
        registry=models,
        store=store,
        generation=generation,
        arena=ArenaService(models, generation, store, min_listen_s=min_listen, duration=arena_duration),
        leaderboard=LeaderboardService(store, models, min_votes=min_votes),
        admin=AdminService(store, admin_token),
        browser_secret=_browser_secret(data_dir),
    )


@dataclass
class RunningApp:
    """A launched server: its URL, page and services."""

    url: str
    demo: object  # gr.Blocks
    services: AppServices

    def close(self) -> None:
        self.demo.close()  # type: ignore[attr-defined]
        self.services.close()


def launch(services: AppServices, host: str = "127.0.0.1", port: int = 7860, *, quiet: bool = True) -> RunningApp:
    """Build the page for ``services`` and start serving it in background threads."""
    from app.ui import CSS, build_ui, theme

    demo = build_ui(services)
    # Handlers mostly wait for the generation worker, so allow many threads; the service bounds the queue.
    demo.queue(max_size=2048, default_concurrency_limit=16)
    try:
        demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=quiet, show_error=True,
                    allowed_paths=[str(services.store.data_dir)], max_threads=256, ssr_mode=False, css=CSS,
                    theme=theme(), footer_links=["api"])
    except OSError as err:
        raise InputError(f"cannot listen on {host}:{port}: {err}") from None
    return RunningApp(url=f"http://{host}:{port}/", demo=demo, services=services)


def serve(
    host: str = "127.0.0.1",
    port: int = 7860,
    db: str | None = None,
    registry: str | Path | ModelRegistry | None = None,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    *,
    min_listen: float = 5.0,
    admin_token: str | None = None,
    max_batch: int = 16,
    min_votes: int = 30,
    arena_duration: float = 6.0,
    torch_threads: int | None = None,
    block: bool = True,
    quiet: bool = False,
) -> RunningApp:
    """Serve the app; ``block=True`` runs until Ctrl-C (then closes the store cleanly).

    ``torch_threads`` sets torch's intra-op threads for the process (one generation worker uses
    them); on a machine shared with other jobs, 1 avoids waiting for time slices at every op.
    """
    if torch_threads is not None:
        if torch_threads < 1:
            raise InputError(f"--torch-threads must be >= 1, got {torch_threads}")
        import torch

        torch.set_num_threads(torch_threads)
    services = build_services(db, registry, data_dir, min_listen=min_listen, admin_token=admin_token,
                              max_batch=max_batch, min_votes=min_votes, arena_duration=arena_duration)
    try:
        running = launch(services, host, port, quiet=True)
    except BaseException:
        services.close()
        raise
    if not quiet:
        print(f"musicrl app: serving {', '.join(services.registry.ids)} on {running.url} "
              f"(store: {services.store.url})", flush=True)
        if services.registry.notice:
            print(f"musicrl app: note: {services.registry.notice}", flush=True)
    if block:
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            running.close()
    return running
