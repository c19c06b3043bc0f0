"""Dynamic batching: concurrent requests share one generation call.

One decode step of a 270M-parameter model reads every weight once, whatever
the batch size; on a CPU or GPU a batch of 16 rows costs far less than 16
single-row steps. So instead of generating for each request as it comes, the
server puts every instance in a queue, and one worker thread:

    1. takes the oldest job;
    2. waits up to ``max_wait_s`` for more *compatible* jobs, up to ``max_batch``;
    3. runs them as one left-padded batch (``GemmaModel.generate_ids``);
    4. hands each job its own row.

"Compatible" means the same sampler settings: ``generate_ids`` takes one
sampler, temperature, top-k and top-p for the whole batch (they are compiled
into the step function, see ``gemma_kit/generate.py``). Greedy jobs always
group. A *seeded* sampled job runs alone: its Gumbel noise comes from one
NumPy generator for the whole batch, so in a batch its row would get different
noise than ``model.generate(prompt, seed=...)`` gives, and the same request
would answer differently depending on its neighbours. Rather than rewrite the
sampler for per-row seeds, we keep the promise "same request, same answer".

Batch sizes are rounded up to 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (a power of two or
1.5 times one; the extra rows repeat the first prompt and are thrown away), so
the compiled programs are reused: about 2 log2(max_batch) shapes instead of
max_batch, and at most a third of a batch is padding (on a CPU, padding rows
cost as much as real ones).

The queue is bounded: ``submit`` raises ``QueueFull`` (the server answers 503)
instead of letting memory and latency grow without limit.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from typing import Callable, List, Optional, Sequence


class QueueFull(RuntimeError):
    """The server has as much work queued as it accepts; the client should retry later."""


@dataclasses.dataclass
class Job:
    prompt_ids: List[int]
    max_tokens: int
    sampling: dict                                    # sampler, temperature, top_k, top_p, seed
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)
    batch_size: int = 0                               # how many jobs it shared its batch with (set when run)

    def group(self) -> Optional[tuple]:
        """Jobs with equal groups may share a batch; ``None``: this job runs alone (a seeded sample)."""
        if self.sampling["sampler"] == "greedy":
            return ("greedy",)
        if self.sampling.get("seed") is not None:
            return None
        return tuple(self.sampling.get(k) for k in ("sampler", "temperature", "top_k", "top_p"))


def padded_size(n: int, max_batch: int) -> int:
    """n rounded up to the next of 1, 2, 3, 4, 6, 8, 12, 16, 24, ..., at most ``max_batch`` (and at least n)."""
    power = 1
    while power * 2 <= n:
        power *= 2                               # the largest power of two <= n
    size = power if n == power else power * 3 // 2 if n <= power * 3 // 2 else power * 2
    return max(n, min(size, max_batch))


class Batcher:
    """A bounded queue of ``Job`` and the worker thread that runs them in batches.

    ``run_batch(jobs)`` returns one result per job, in order; it runs on the worker thread.
    """

    def __init__(self, run_batch: Callable[[List[Job]], Sequence], max_batch: int = 16,
                 max_wait_s: float = 0.01, max_queue: int = 256):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError(f"Batcher needs max_batch >= 1, max_queue >= 1 and max_wait_s >= 0, got "
                             f"{max_batch}, {max_queue}, {max_wait_s}")
        self.run_batch, self.max_batch, self.max_wait_s, self.max_queue = run_batch, max_batch, max_wait_s, max_queue
        self._pending: List[Job] = []
        self._lock = threading.Condition()
        self._closing = False
        self.accepted = self.completed = self.batches = 0
        self._thread = threading.Thread(target=self._work, name="gemma-kit-batcher", daemon=True)
        self._thread.start()

    def submit(self, jobs: List[Job]) -> None:
        """Queue all of ``jobs`` or none of them (a request is accepted whole)."""
        with self._lock:
            if self._closing:
                raise QueueFull("The server is shutting down")
            if len(self._pending) + len(jobs) > self.max_queue:
                raise QueueFull(f"The queue is full ({len(self._pending)} instances waiting, "
                                f"limit {self.max_queue}); retry later")
            self._pending.extend(jobs)
            self.accepted += len(jobs)
            self._lock.notify_all()

    def close(self, timeout: Optional[float] = None) -> None:
        """Accept nothing more, finish every queued job, stop the worker."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._thread.join(timeout)

    # -- the worker ------------------------------------------------------------------------------
    def _take_compatible(self, batch: List[Job]) -> None:
        group = batch[0].group()
        for job in list(self._pending):
            if len(batch) >= self.max_batch:
                return
            if job.group() == group:
                self._pending.remove(job)
                batch.append(job)

    def _next_batch(self) -> Optional[List[Job]]:
        with self._lock:
            while not self._pending and not self._closing:
                self._lock.wait()
            if not self._pending:
                return None                                    # closing and nothing left
            batch = [self._pending.pop(0)]
            if batch[0].group() is None or self.max_batch == 1:
                return batch
            deadline = time.monotonic() + self.max_wait_s
            while True:
                self._take_compatible(batch)
                remaining = deadline - time.monotonic()
                if len(batch) >= self.max_batch or remaining <= 0 or self._closing:
                    return batch
                self._lock.wait(remaining)

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            for job in batch:
                job.batch_size = len(batch)
            try:
                results = self.run_batch(batch)
            except Exception as error:                        # every waiting client gets the error, and we go on
                for job in batch:
                    job.future.set_exception(error)
            else:
                for job, result in zip(batch, results):
                    job.future.set_result(result)
            with self._lock:
                self.completed += len(batch)
                self.batches += 1
