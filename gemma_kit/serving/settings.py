"""The server's settings: Vertex AI's ``AIP_*`` variables, ours, and the command line.

Vertex AI starts a custom container with (among others):

    AIP_HTTP_PORT       the port to listen on (we default to 8080, Vertex's default)
    AIP_HEALTH_ROUTE    GET here: 503 until the model is ready, then 200
    AIP_PREDICT_ROUTE   POST {"instances": [...], "parameters": {...}} here
    AIP_STORAGE_URI     gs:// copy of the model's artifact_uri (see source.py)

Our own knobs are ``GEMMA_KIT_*`` variables (set them in the container spec's
``env`` when deploying) or command-line flags (which win). Every field below
has one of each: ``max_batch`` <- ``GEMMA_KIT_MAX_BATCH`` <- ``--max-batch``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from .schema import Limits
from .source import choose_source

MAX_BODY_BYTES = 1_572_864          # 1.5 MiB: Vertex AI's own limit on an online prediction request


@dataclasses.dataclass
class Settings:
    model: str = "gemma3_270m"
    lora: Optional[str] = None            # a LoRA adapter file, loaded with gemma_kit.tuning.load_adapter
    dtype: Optional[str] = None           # e.g. "bfloat16" on a GPU
    host: str = "0.0.0.0"
    port: int = 8080
    health_route: str = "/health"
    predict_route: str = "/predict"
    max_batch: int = 16                   # rows per generation call (1: no batching)
    max_wait_ms: float = 10.0             # how long the first job of a batch waits for company
    max_queue: int = 256                  # queued instances before answering 503
    max_instances: int = 16               # instances per request
    max_tokens: int = 256                 # max_tokens per instance
    max_prompt_tokens: int = 1024
    warmup: str = "all"                   # compile batch shapes before turning healthy: all, 1 or none

    def limits(self) -> Limits:
        return Limits(max_instances=self.max_instances, max_tokens=self.max_tokens,
                      max_prompt_tokens=self.max_prompt_tokens)

    @classmethod
    def from_env(cls, environ=os.environ, **overrides) -> "Settings":
        """Defaults, then environment variables, then ``overrides`` that are not None (the flags)."""
        values = {}
        env_names = dict(port="AIP_HTTP_PORT", health_route="AIP_HEALTH_ROUTE", predict_route="AIP_PREDICT_ROUTE")
        for field in dataclasses.fields(cls):
            name = env_names.get(field.name, "GEMMA_KIT_" + field.name.upper())
            if name in environ and field.name != "model":
                kind = type(field.default) if field.default is not None else str
                try:
                    values[field.name] = kind(environ[name])
                except ValueError:
                    raise ValueError(f"Environment variable {name}={environ[name]!r} is not a valid "
                                     f"{kind.__name__}") from None
        values["model"] = choose_source(overrides.pop("model", None), environ)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        if settings.warmup not in ("all", "1", "none"):
            raise ValueError(f"warmup must be all, 1 or none, got {settings.warmup!r}")
        for name in ("max_batch", "max_queue", "max_instances", "max_tokens", "max_prompt_tokens"):
            if getattr(settings, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(settings, name)}")
        for name in ("health_route", "predict_route"):
            if not getattr(settings, name).startswith("/"):
                raise ValueError(f"{name} must start with '/', got {getattr(settings, name)!r}")
        return settings


def add_flags(parser) -> None:
    """The command-line flags of ``gemma-kit serve`` and ``python -m gemma_kit.serving``.

    Every flag defaults to None, so that the AIP_* / GEMMA_KIT_* variables decide (``Settings.from_env``).
    """
    parser.add_argument("--model", default=None, help="a source for gemma_kit.load (default: $AIP_STORAGE_URI, "
                        "$GEMMA_KIT_MODEL, then gemma3_270m)")
    parser.add_argument("--port", type=int, default=None, help="default: $AIP_HTTP_PORT or 8080")
    parser.add_argument("--host", default=None, help="default: 0.0.0.0")
    parser.add_argument("--lora", default=None, help="a LoRA adapter file to load before serving")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--max-batch", type=int, default=None, help="rows per generation call; 1 = no batching")
    parser.add_argument("--max-wait-ms", type=float, default=None, help="how long a batch waits to fill")
    parser.add_argument("--max-queue", type=int, default=None, help="queued instances before answering 503")
    parser.add_argument("--max-instances", type=int, default=None, help="instances per request")
    parser.add_argument("--max-tokens", type=int, default=None, help="the largest max_tokens a request may ask")
    parser.add_argument("--max-prompt-tokens", type=int, default=None)
    parser.add_argument("--warmup", default=None, choices=("all", "1", "none"),
                        help="compile every batch size before turning healthy (all), only batch 1, or none")
