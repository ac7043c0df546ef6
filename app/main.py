"""Start the app: build the services, build the page, launch it.

``serve(...)`` is what ``musicrl app`` runs; tests and benchmarks call it with ``block=False`` and
get a :class:`RunningApp` to close. Nothing here is global: one call builds one set of services.

What the web server may send (docs/SECURITY.md): gradio serves its own cache of the files our
handlers return, plus ``allowed_paths`` — here only the clip audio and picture folders of the data
directory; the database, its WAL and anything else in the data directory are ``blocked_paths``
besides. The one upload is an audio file to continue (``app/extend.py``): capped at
``MAX_UPLOAD_BYTES`` (10 MiB) here, before any handler runs, and again by the handler.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.extend import MAX_UPLOAD_BYTES
from app.registry import ModelRegistry
from app.services import DEFAULT_DATA_DIR, AppServices, build_services
from models.errors import InputError

MAX_UPLOAD = MAX_UPLOAD_BYTES  # gradio refuses larger uploads (HTTP 413) before any handler runs


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
    for folder in services.public_dirs:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=quiet, show_error=True,
                    allowed_paths=[str(p) for p in services.public_dirs],
                    blocked_paths=[str(p) for p in services.private_paths], max_file_size=MAX_UPLOAD,
                    max_threads=256, ssr_mode=False, css=CSS, theme=theme(), footer_links=["api"])
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
    torch_threads: int | None = None,
    block: bool = True,
    quiet: bool = False,
    **options: Any,
) -> RunningApp:
    """Serve the app; ``block=True`` runs until Ctrl-C (then closes the store cleanly).

    ``options`` are :func:`app.services.build_services`'s (min_listen, admin_token, max_batch, min_votes,
    arena_duration, limits, trust_forwarded_for, repeat_share, scorers). ``torch_threads`` sets torch's intra-op
    threads for the process (one generation worker uses them); on a machine shared with other jobs,
    1 avoids waiting for time slices at every op.
    """
    if torch_threads is not None:
        if torch_threads < 1:
            raise InputError(f"--threads must be >= 1, got {torch_threads}")
        import torch

        torch.set_num_threads(torch_threads)
    services = build_services(db, registry, data_dir, **options)
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
