"""The HTTP application (FastAPI): Vertex AI's health and prediction routes.

    GET  $AIP_HEALTH_ROUTE    503 {"status": "loading"} -> 200 {"status": "ready"} -> 503 {"status": "draining"}
    POST $AIP_PREDICT_ROUTE   {"instances": [...], "parameters": {...}} -> {"predictions": [...]}

Answers to a prediction request, in the order they are checked:

    503  the model is still loading, or the server is shutting down (SIGTERM)
    413  the body is above 1.5 MiB (checked on Content-Length and while reading)
    400  not JSON, or a field fails validation (schema.py), or a prompt is too long
    503  the queue is full (batcher.py): retry later; nothing was started
    200  the predictions, one per instance, in order

Every answer is JSON, errors as ``{"error": "..."}``, and every request writes
one JSON line to stdout (method, path, status, milliseconds, instances, tokens,
and the size of the batch each instance ran in).

The route body is read by hand instead of declared as a pydantic parameter:
FastAPI would answer a validation error with 422, and the issue (and Vertex
AI's clients) expect 400; reading it ourselves also lets us stop at the size
limit without holding a huge body in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batcher import QueueFull
from .engine import Engine, log
from .schema import RequestError, parse_request
from .settings import MAX_BODY_BYTES, Settings


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(f"Invalid Content-Length header: {declared!r}")
        if int(declared) > limit:
            raise RequestError(f"The body is {int(declared):,} bytes; the limit is {limit:,}", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():                  # also catches chunked bodies without a length
        size += len(chunk)
        if size > limit:
            raise RequestError(f"The body is above the limit of {limit:,} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings, engine: Engine | None = None, on_load_error=None) -> FastAPI:
    """The app; with ``engine=None`` it loads one from ``settings`` in a thread, healthy when done."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.engine is None:
            threading.Thread(target=_load, args=(app,), name="gemma-kit-loader", daemon=True).start()
        yield
        app.state.draining = True
        if app.state.engine is not None:                  # every accepted job is finished before we exit
            app.state.engine.batcher.close()
            batcher = app.state.engine.batcher
            log(event="shutdown", accepted=batcher.accepted, completed=batcher.completed, batches=batcher.batches)

    def _load(app: FastAPI) -> None:
        try:
            app.state.engine = Engine.load(settings)
        except Exception as error:                        # a bad path or file: say so and stop the server
            log(event="load_failed", source=settings.model, lora=settings.lora,
                error=f"{type(error).__name__}: {error}")
            if on_load_error is not None:
                on_load_error(error)

    app = FastAPI(title="gemma-kit", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.draining = engine, False

    @app.middleware("http")
    async def one_log_line_per_request(request: Request, call_next):
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as error:                        # a bug: answer 500, log it, keep serving
            request.state.error = f"{type(error).__name__}: {error}"
            response = JSONResponse({"error": "Internal error: " + request.state.error}, status_code=500)
        log(method=request.method, path=request.url.path, status=response.status_code,
            ms=round((time.perf_counter() - start) * 1000, 1), **getattr(request.state, "log", {}),
            **({"error": request.state.error} if hasattr(request.state, "error") else {}))
        return response

    def error(request: Request, status: int, message: str) -> JSONResponse:
        request.state.error = message
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):   # 404 unknown route, 405 method
        return error(request, exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

    @app.get(settings.health_route)
    async def health():
        if app.state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if app.state.engine is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready"}

    @app.post(settings.predict_route)
    async def predict(request: Request):
        engine = app.state.engine
        if app.state.draining:
            return error(request, 503, "The server is shutting down")
        if engine is None:
            return error(request, 503, "The model is still loading; retry when the health route answers 200")
        try:
            body = await read_body(request)
            try:
                data = json.loads(body)
            except (ValueError, RecursionError) as exc:    # RecursionError: [[[[...]]]] nested too deep
                raise RequestError(f"The body is not valid JSON: {exc}") from None
            instances = parse_request(data, engine.limits)
            jobs = await asyncio.to_thread(engine.jobs, instances)     # tokenizing 1.5 MB must not stall the loop
            engine.batcher.submit(jobs)
        except RequestError as exc:
            return error(request, exc.status, str(exc))
        except QueueFull as exc:
            return error(request, 503, str(exc))
        predictions = await asyncio.gather(*(asyncio.wrap_future(job.future) for job in jobs))
        request.state.log = dict(instances=len(jobs), generated_tokens=sum(p["generated_tokens"] for p in predictions),
                                 batch_sizes=[job.batch_size for job in jobs])
        return {"predictions": predictions}

    return app
