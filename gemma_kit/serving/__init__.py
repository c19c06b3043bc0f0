"""Serve a Gemma model over HTTP the way Vertex AI calls a custom container.

One concept per file:

    schema.py    the request / response bodies (pydantic) and their limits
    batcher.py   the bounded queue and the worker that groups requests into batches
    engine.py    the model: load it (source or $AIP_STORAGE_URI, LoRA), run a batch
    source.py    where the model comes from (gs:// download)
    settings.py  AIP_* and GEMMA_KIT_* environment variables, and flags
    app.py       the FastAPI routes: health, predict, errors, one JSON log line per request
    server.py    uvicorn, and the SIGTERM drain
    client.py    start the server as a local process and call it like Vertex AI (tests, lesson 04)

    gemma-kit serve --model gemma3_270m --port 8080
    curl -s localhost:8080/predict -d '{"instances": [{"prompt": "The capital of France is"}]}'
"""

from .app import create_app
from .batcher import Batcher, Job, QueueFull
from .client import SERVE_COMMAND, LocalServer, ServerError
from .engine import Engine
from .schema import Instance, Limits, RequestError, parse_request
from .server import run
from .settings import MAX_BODY_BYTES, Settings

__all__ = ["create_app", "run", "Settings", "Engine", "Batcher", "Job", "QueueFull", "Instance", "Limits",
           "RequestError", "parse_request", "MAX_BODY_BYTES", "LocalServer", "ServerError", "SERVE_COMMAND"]
