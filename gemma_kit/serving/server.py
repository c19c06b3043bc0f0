"""Run the app with uvicorn, and stop it the way Vertex AI stops a container.

When Vertex AI (or Kubernetes, or Docker) stops a container it sends SIGTERM,
waits a grace period, then SIGKILL. On SIGTERM the server:

    1. answers 503 on the health and prediction routes (the load balancer stops sending work);
    2. stops listening, and lets uvicorn finish every request already in flight;
    3. closes the batcher, which runs every job still queued;
    4. logs {"event": "shutdown", "accepted": N, "completed": N} and exits.

Nothing accepted is lost: a request either got a 503 / a refused connection,
or its predictions.

    python -m gemma_kit.serving --model gemma3_270m --port 8080
    gemma-kit serve --model gemma3_270m             # the same thing
"""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from .app import create_app
from .engine import log
from .settings import Settings, add_flags


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, with the app told to refuse new work as soon as the signal arrives."""

    def __init__(self, config, app):
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig, frame):
        self.app.state.draining = True
        log(event="signal", signal=int(sig), note="draining: finishing the requests in flight")
        super().handle_exit(sig, frame)


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status (1 if the model failed to load)."""
    failed = []

    def on_load_error(error):
        failed.append(error)
        server.should_exit = True

    app = create_app(settings, on_load_error=on_load_error)
    # access_log=False: our middleware writes the one JSON line per request.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, access_log=False, log_level="warning",
                            timeout_graceful_shutdown=None)
    server = _DrainingServer(config, app)
    log(event="starting", host=settings.host, port=settings.port, health_route=settings.health_route,
        predict_route=settings.predict_route, model=settings.model, max_batch=settings.max_batch,
        backend=os.environ.get("KERAS_BACKEND", "jax"))
    server.run()
    return 1 if failed else 0


def main(argv=None, prog="python -m gemma_kit.serving") -> int:
    """``python -m gemma_kit.serving [flags]`` and ``gemma-kit serve [flags]``; bad settings exit 2."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_flags(parser)
    try:
        return run(Settings.from_env(**vars(parser.parse_args(argv))))
    except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
