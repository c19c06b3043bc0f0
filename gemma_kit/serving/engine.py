"""The model behind the server: load it, turn instances into jobs, run a batch of jobs.

    engine = Engine.load(settings)                 # gemma_kit.load + LoRA adapter + warm-up
    jobs = engine.jobs(instances)                  # tokenized, length-checked (RequestError -> 400)
    engine.batcher.submit(jobs)                    # the worker calls engine.run_batch(batch)

``run_batch`` is ``GemmaModel.generate_ids`` on the batch's prompts with the
longest ``max_tokens`` of the batch; each row is then cut to its own
``max_tokens``. Greedy decoding is prefix-stable, so a row cut to 8 tokens is
what generating 8 tokens alone gives; sampled jobs only share a batch when they
have no seed (see batcher.py), and a seeded one runs alone with its own
``max_tokens``. So every prediction equals ``model.generate`` for the same
instance.
"""

from __future__ import annotations

import json
import sys
import time
from typing import List

from .batcher import Batcher, Job, padded_size
from .schema import Instance, Limits, Prediction, RequestError


def log(**fields) -> None:
    """One JSON object per line on stdout (Cloud Logging parses these into structured entries)."""
    fields = {"time": round(time.time(), 3), **fields}
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Engine:
    def __init__(self, model, limits: Limits, max_batch: int = 16, max_wait_s: float = 0.01, max_queue: int = 256):
        self.model, self.limits, self.max_batch = model, limits, max_batch
        self.batcher = Batcher(self.run_batch, max_batch=max_batch, max_wait_s=max_wait_s, max_queue=max_queue)

    @classmethod
    def load(cls, settings) -> "Engine":
        """Load ``settings.model`` (and ``settings.lora``), then compile the batch shapes before serving."""
        import gemma_kit
        from .source import local_model_path

        start = time.perf_counter()
        model = gemma_kit.load(local_model_path(settings.model), dtype=settings.dtype)
        if settings.lora:
            from ..tuning import load_adapter                 # gemma_kit/tuning/adapters.py
            load_adapter(model, settings.lora)
        log(event="model_loaded", source=settings.model, lora=settings.lora, model=repr(model),
            seconds=round(time.perf_counter() - start, 2))
        engine = cls(model, settings.limits(), max_batch=settings.max_batch, max_wait_s=settings.max_wait_ms / 1000,
                     max_queue=settings.max_queue)
        engine.warm_up(settings.warmup)
        return engine

    def warm_up(self, how: str) -> None:
        """Compile ahead of the first request: "all" batch sizes the batcher uses, "1", or "none"."""
        if how == "none":
            return
        sizes = {padded_size(n, self.max_batch) for n in range(1, self.max_batch + 1)} if how == "all" else {1}
        prompt = self.model.encode_prompt("Hello")
        for size in sorted(sizes):
            start = time.perf_counter()
            self.model.generate_ids([prompt] * size, 2)       # a short prompt and 2 tokens: the serving shapes
            log(event="warm_up", batch=size, seconds=round(time.perf_counter() - start, 2))

    def jobs(self, instances: List[Instance]) -> List[Job]:
        jobs = []
        for i, instance in enumerate(instances):
            ids = self.model.encode_prompt(instance.prompt)
            if len(ids) > self.limits.max_prompt_tokens:
                raise RequestError(f"instances[{i}].prompt: {len(ids)} tokens is above this server's limit "
                                   f"of {self.limits.max_prompt_tokens}")
            try:
                self.model.check_lengths([ids], instance.max_tokens)      # the model's own limit, as generate checks it
            except ValueError as error:
                raise RequestError(f"instances[{i}]: {error}") from None
            jobs.append(Job(ids, instance.max_tokens, instance.sampling()))
        return jobs

    def run_batch(self, jobs: List[Job]) -> List[dict]:
        prompts = [job.prompt_ids for job in jobs]
        prompts += [prompts[0]] * (padded_size(len(jobs), self.max_batch) - len(jobs))   # reuse compiled shapes
        steps = max(job.max_tokens for job in jobs)
        rows = self.model.generate_ids(prompts, steps, **jobs[0].sampling)   # stop token already cut off
        predictions = []
        for job, row in zip(jobs, rows):
            stopped = len(row) < job.max_tokens
            row = row[:job.max_tokens]
            predictions.append(Prediction(text=self.model.tokenizer.decode(row), prompt_tokens=len(job.prompt_ids),
                                          generated_tokens=len(row),
                                          finish_reason="stop" if stopped else "length").model_dump())
        return predictions
