"""Serving throughput with and without dynamic batching, at 1, 4 and 16 concurrent clients.

    python benchmarks/serve.py                          # the real Gemma 3 270M (~7 min on 2 cores)
    python benchmarks/serve.py --clients 1 8 --requests-per-client 4 --max-tokens 16
    python benchmarks/serve.py --model path/to/model.gguf

Two server processes run side by side, started with the command the container
runs (``gemma_kit.serving.LocalServer``): one with ``--max-batch 16`` (concurrent
requests share a generation call, see gemma_kit/serving/batcher.py) and one
with ``--max-batch 1`` (one request at a time). They take turns, so both see
the same machine load. Both wait up to ``--max-wait-ms 50`` for a batch to fill
(the server's default is 10 ms; on a CPU, where one generation call takes
seconds, 50 ms lets a burst of clients arrive before the batch starts), and
both compile every batch shape before turning healthy, so no compilation is
timed. For each number of clients, each client sends ``--requests-per-client``
requests one after another (greedy, ``--max-tokens`` new tokens, a different
prompt each), and we time the whole wave: requests/s, generated tokens/s, and
the p50/p99 latency a client saw.

Target (PASS/MISS): tokens/s with batching at 16 clients >= 3x without.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gemma_kit.serving import LocalServer

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "The best way to learn is",
           "Water boils at", "My favourite book is", "import numpy as np\n", "The sun is a",
           "In 1969, the first", "A haiku about the sea:", "The three primary colours are", "SELECT * FROM",
           "Photosynthesis is", "The tallest mountain is", "Dear diary,", "The recipe needs"]


def wave(server: LocalServer, clients: int, requests_each: int, max_tokens: int):
    """All clients at once; returns (seconds, requests, generated tokens, latencies in ms)."""
    def client(index):
        out = []
        for i in range(requests_each):
            prompt = PROMPTS[(index * requests_each + i) % len(PROMPTS)]
            start = time.perf_counter()
            prediction = server.predict([{"prompt": prompt, "max_tokens": max_tokens}])[0]
            out.append((prediction["generated_tokens"], (time.perf_counter() - start) * 1000))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    seconds = time.perf_counter() - start
    return seconds, len(results), sum(t for t, _ in results), [ms for _, ms in results]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3_270m")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=50.0, help="the server default is 10; see README")
    args = parser.parse_args()
    largest = max(args.clients)
    print(f"model {args.model}, backend {os.environ.get('KERAS_BACKEND', 'jax')}, {args.max_tokens} new tokens "
          f"(greedy), {args.requests_per_client} requests per client")

    # Both servers run at once (an idle one costs no CPU) and take turns at each number of clients, so a change
    # in the machine's load hits both sides alike.
    servers = {}
    try:
        for label, max_batch in (("batched", largest), ("unbatched", 1)):
            start = time.perf_counter()
            servers[label] = LocalServer("--model", args.model, "--max-batch", str(max_batch), "--max-wait-ms",
                                         str(args.max_wait_ms), "--warmup", "all", "--max-queue", "1024").start()
            print(f"{label} server (--max-batch {max_batch}) ready in {time.perf_counter() - start:.0f} s")
        rows = {}
        for clients in args.clients:
            for label, server in servers.items():
                seconds, requests, tokens, latencies = wave(server, clients, args.requests_per_client, args.max_tokens)
                sizes = [s for line in server.log() if line.get("path") == "/predict" for s in line["batch_sizes"]]
                rows[label, clients] = dict(rps=requests / seconds, tps=tokens / seconds,
                                            p50=np.percentile(latencies, 50), p99=np.percentile(latencies, 99))
                print(f"  {label:>9} {clients:>3} clients: {requests} requests in {seconds:6.1f} s  "
                      f"{requests / seconds:6.2f} req/s  {tokens / seconds:7.1f} tok/s  "
                      f"p50 {rows[label, clients]['p50']:7.0f} ms  p99 {rows[label, clients]['p99']:7.0f} ms  "
                      f"(mean batch so far {np.mean(sizes):.1f}; load average {os.getloadavg()[0]:.1f})")
    finally:
        for server in servers.values():
            server.stop()

    print("\n| clients | batched req/s | batched tok/s | unbatched req/s | unbatched tok/s | tok/s ratio | "
          "batched p50 / p99 ms | unbatched p50 / p99 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for clients in args.clients:
        b, u = rows["batched", clients], rows["unbatched", clients]
        print(f"| {clients} | {b['rps']:.2f} | {b['tps']:.1f} | {u['rps']:.2f} | {u['tps']:.1f} | "
              f"{b['tps'] / u['tps']:.2f}x | {b['p50']:.0f} / {b['p99']:.0f} | {u['p50']:.0f} / {u['p99']:.0f} |")
    ratio = rows["batched", largest]["tps"] / rows["unbatched", largest]["tps"]
    print(f"\ntarget: batched tok/s at {largest} clients >= 3x unbatched: {ratio:.2f}x "
          f"{'PASS' if ratio >= 3 else 'MISS'}")
    print(json.dumps({f"{label}@{clients}": {k: round(v, 2) for k, v in row.items()}
                      for (label, clients), row in rows.items()}))


if __name__ == "__main__":
    main()
