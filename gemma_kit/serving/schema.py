"""The request and response bodies of the prediction route, checked with pydantic.

Vertex AI's custom-container contract fixes only the envelope:

    request:  {"instances": [instance, ...], "parameters": {...}}
    response: {"predictions": [prediction, ...]}           # one per instance, same order

What an *instance* holds is ours to define. Here it is one prompt and its
sampling settings (the names vLLM's and OpenAI's servers use)::

    {"prompt": "The capital of France is", "max_tokens": 32,
     "temperature": 0.7, "top_k": 40, "top_p": null, "seed": 1}

``parameters`` gives defaults for every instance; a field in an instance wins.

How the fields choose gemma_kit's sampler (``gemma_kit/sampling.py``):

    temperature == 0 (the default)        -> "greedy"   (top_k, top_p and seed must be absent)
    temperature > 0, top_k given          -> "top_k"
    temperature > 0, top_p given          -> "top_p"    (not both: gemma_kit has no combined filter)
    temperature > 0, neither              -> "temperature"

Every check failure becomes a 400 answer whose message names the field, e.g.
``instances[2].max_tokens: Input should be less than or equal to 256``.
"""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator


class RequestError(ValueError):
    """A request we refuse with a 4xx status; ``str(error)`` is the message the client reads."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Limits(BaseModel):
    """What one request may ask for (the server's settings fill these in)."""
    max_instances: int = 16          # instances per request
    max_tokens: int = 256            # new tokens per instance
    max_prompt_tokens: int = 1024    # prompt tokens per instance (BOS included)


# strict: "12" is not an int and true is not a number; extra="forbid": a misspelt field is an error,
# not a silently ignored one; allow_inf_nan=False: Python's json module accepts NaN and Infinity.
_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def _whole_float_to_int(value):
    # Vertex AI's clients carry instances as protobuf Values, whose numbers are doubles: 64 arrives as 64.0.
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_whole_float_to_int)]    # 64 and 64.0 pass; 64.5, "64", true fail


class Instance(BaseModel):
    model_config = _STRICT
    prompt: str = Field(min_length=1)
    max_tokens: WholeNumber = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=100.0)
    top_k: Optional[WholeNumber] = Field(default=None, ge=1)
    top_p: Optional[float] = Field(default=None, gt=0.0, le=1.0)
    seed: Optional[WholeNumber] = Field(default=None, ge=0, lt=2**63)

    @model_validator(mode="after")
    def _one_sampler(self):
        if self.temperature == 0 and (self.top_k is not None or self.top_p is not None or self.seed is not None):
            raise ValueError("top_k, top_p and seed need temperature > 0 (temperature 0 means greedy decoding)")
        if self.top_k is not None and self.top_p is not None:
            raise ValueError("give top_k or top_p, not both")
        return self

    def sampling(self) -> Dict[str, Any]:
        """Keyword arguments for ``GemmaModel.generate_ids`` / ``generate``."""
        if self.temperature == 0:
            return dict(sampler="greedy")
        sampler = "top_k" if self.top_k is not None else "top_p" if self.top_p is not None else "temperature"
        return dict(sampler=sampler, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                    seed=self.seed)


class Envelope(BaseModel):
    model_config = _STRICT
    instances: List[Dict[str, Any]] = Field(min_length=1)
    parameters: Dict[str, Any] = Field(default_factory=dict)


class Prediction(BaseModel):
    text: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: str                # "stop" (a stop token came) or "length" (max_tokens reached)


def _describe(error: ValidationError, prefix: str) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"])
        parts.append(f"{where.lstrip('.') or 'body'}: {item['msg']}")
    return "; ".join(parts)


def parse_request(body: Any, limits: Limits) -> List[Instance]:
    """The validated instances of a decoded JSON body, or a ``RequestError`` naming what is wrong."""
    if not isinstance(body, dict):
        raise RequestError(f'The body must be a JSON object like {{"instances": [...]}}, got {type(body).__name__}')
    try:
        envelope = Envelope.model_validate(body)
    except ValidationError as error:
        raise RequestError(_describe(error, "")) from None
    if len(envelope.instances) > limits.max_instances:
        raise RequestError(f"Too many instances: {len(envelope.instances)} > {limits.max_instances} per request")
    instances = []
    for i, fields in enumerate(envelope.instances):
        try:
            instance = Instance.model_validate({**envelope.parameters, **fields})
        except ValidationError as error:
            raise RequestError(_describe(error, f"instances[{i}]")) from None
        if instance.max_tokens > limits.max_tokens:
            raise RequestError(f"instances[{i}].max_tokens: {instance.max_tokens} is above this server's "
                               f"limit of {limits.max_tokens}")
        instances.append(instance)
    return instances
