"""Decode speed on the real Gemma 3 270M: int8, speculative decoding, chat, start-up, vs keras-hub and llama.cpp.

    python benchmarks/decode.py [--parts decode,grounded,accuracy,memory,chat,startup] [--rounds 3]
                                [--max-new-tokens 128] [--skip-keras-hub] [--llama-python PATH]

llama.cpp runs in a child process (``llama_cpp_worker.py``) with the interpreter of ``--llama-python``:
``make bench-llama`` builds llama-cpp-python from PyPI into ``benchmarks/.venv-llama``, which is the
default when it exists; without llama_cpp there, its rows are skipped with a message saying why.

Every system loads first; then ``--rounds`` rounds time every system once, in turn, so a
change in the machine's load hits all of them alike; a system's row is its best round
(least tN). Greedy, batch 1, no stop at EOS, the same prompt token ids (BOS + prompt) for all;
timed work is token ids in, token ids out. The parts (``--parts``):

1. decode: plain decoding, N new tokens. gemma_kit float32 (the GGUF dequantized), gemma_kit
   int8 (``load(..., quantize="int8")``, ``nn/int8.py``), keras-hub's ``Gemma3CausalLM`` built
   from gemma_kit's float32 weights, llama.cpp on the GGUF itself (Q4_K_M, ``--llama-threads``).
2. grounded: a prompt whose answer copies it (code snippets of ``data/stdlib_fim_test.jsonl``,
   then "the same code, with comments removed"): plain against prompt-lookup speculative
   decoding (``speculative="prompt_lookup"``, ``speculative.py``) and llama-cpp-python's own
   ``LlamaPromptLookupDecoding``, the same n-gram and draft length for both.
3. accuracy: int8 against float32 greedy ids, 5 everyday prompts x 32 tokens, and the logits' error.
4. memory: peak RSS of a fresh process after ``gemma_kit.load`` in float32 and in int8.
5. chat: two 3-turn conversations (float32; a pasted text then short questions, and three long
   messages): ``model.chat()`` (the cache kept between turns, ``session.py``) against
   ``generate`` on the whole conversation at every turn.
6. startup: first call (load + a first 32-token generation) in a fresh process: gemma_kit float32
   and int8, each with an empty JAX compile cache, then with it warm, against keras-hub loading a preset folder
   (``save_to_preset`` of the same weights, written once, untimed).

Definitions (decode and grounded):
- load s: building the system (gemma_kit: read the GGUF and build; keras-hub: build and copy
  gemma_kit's float32 weights; llama.cpp: ``Llama(model_path=...)`` in its process).
- first call s: the first N-token generation, compilation included.
- t1 / tN: seconds until the first / the N-th token. gemma_kit and keras-hub run a second call
  that stops at the first token (same shapes, so prefill + one sample; keras-hub compiles it
  once untimed); llama.cpp streams, so t1 is when its first token came out.
- e2e tok/s = N / tN; decode tok/s = (N - 1) / (tN - t1), the prompt's pass left out.
- accept: accepted / drafted tokens; tok/call: N / passes of the target model (prompt included).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
from llama_cpp_worker import LlamaCpp, LlamaCppWorker  # noqa: E402  (this folder is on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
LLAMA_PYTHON = os.path.join(HERE, ".venv-llama", "bin", "python")     # `make bench-llama` builds it
PARTS = ("decode", "grounded", "accuracy", "memory", "chat", "startup")
EVERYDAY_PROMPTS = ["The capital of France is", "My favourite recipe for pancakes is",
                    "Here is a short poem about the sea:\n", "The three primary colours are",
                    "To make a good cup of tea, first"]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def load_average():
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# -- the systems: each one has a name, load_s, warm(ids, n) -> (ids, first call s), run(ids, n) -> timings --------
class GemmaKit:
    """A GemmaModel, plain or with ``speculative=`` (prompt lookup)."""

    def __init__(self, name, model, load_s, speculative=None):
        self.name, self.model, self.load_s, self.speculative = name, model, load_s, speculative

    def generate(self, ids, n, stop=()):
        return self.model.generate_ids([ids], n, stop_tokens=list(stop), speculative=self.speculative)[0]

    def warm(self, ids, n):
        return timed(lambda: self.generate(ids, n))

    def run(self, ids, n):
        out, tn = timed(lambda: self.generate(ids, n))
        spec = self.model.last_speculation if self.speculative else None
        _, t1 = timed(lambda: self.generate(ids, n, stop=[out[0]]))         # prefill + one sample
        if spec is None:                                                     # plain: one pass per token
            return dict(ids=out, t1=t1, tn=tn, drafted=0, accepted=0, calls=n)
        return dict(ids=out, t1=t1, tn=tn, drafted=spec.drafted, accepted=spec.accepted,
                    calls=spec.verify_calls + 1)


class KerasHub:
    """keras-hub's ``Gemma3CausalLM`` with a copy of a gemma_kit model's weights (greedy sampler)."""

    def __init__(self, model):
        from gemma_kit.export.keras_hub import keras_hub_causal_lm

        self.name = "keras-hub f32"
        self.causal_lm, self.load_s = timed(lambda: keras_hub_causal_lm(model))
        self.causal_lm.compile(sampler="greedy")
        self.generate_fn = self.causal_lm.make_generate_function()   # what `generate` runs, minus text

    def generate(self, ids, n, stop=None):
        inputs = {"token_ids": np.array([ids + [0] * n], np.int32),       # prompt + n padded slots
                  "padding_mask": np.array([[True] * len(ids) + [False] * n])}
        out = self.generate_fn(inputs, stop_token_ids=stop)
        return [int(t) for t in np.asarray(out["token_ids"])[0, len(ids):]]

    def warm(self, ids, n):
        out, first_s = timed(lambda: self.generate(ids, n))
        self.generate(ids, n, stop=(out[0],))                         # compiles the 1-token variant
        return out, first_s

    def run(self, ids, n):
        out, tn = timed(lambda: self.generate(ids, n))
        _, t1 = timed(lambda: self.generate(ids, n, stop=(out[0],)))
        return dict(ids=out, t1=t1, tn=tn, drafted=0, accepted=0, calls=n)


def take_turns(systems, ids, n, rounds):
    """Warm every system, then ``rounds`` rounds of one timed run each; the best round per system."""
    first = {s.name: s.warm(ids, n) for s in systems}
    runs = {s.name: [] for s in systems}
    for round_ in range(rounds):
        for s in systems:
            runs[s.name].append(s.run(ids, n))
        print(f"round {round_ + 1}: " + ", ".join(f"{s.name} {runs[s.name][-1]['tn']:.2f} s" for s in systems)
              + f"; load average {load_average()}", flush=True)
    rows = {}
    for s in systems:
        r = dict(min(runs[s.name], key=lambda r: r["tn"]), name=s.name, load=s.load_s, first=first[s.name][1])
        r.update(e2e=n / r["tn"], decode=(n - 1) / (r["tn"] - r["t1"]))
        rows[s.name] = r
    return rows


def same_ids(ids, reference):
    differ = [i for i, (a, b) in enumerate(zip(ids, reference)) if a != b]
    return "yes" if list(ids) == list(reference) else f"NO (token {differ[0] if differ else len(reference)})"


def table(header, lines):
    print("\n| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
    for line in lines:
        print("| " + " | ".join(str(x) for x in line) + " |")


# -- the parts --------------------------------------------------------------------------------------------
def part_decode(systems, args, targets):
    import gemma_kit

    ids = systems["f32"].model.encode_prompt(args.prompt)
    chosen = [systems[k] for k in ("f32", "int8", "keras_hub", "llama") if systems.get(k)]
    rows = take_turns(chosen, ids, args.max_new_tokens, args.rounds)
    for r in rows.values():
        r["same"] = same_ids(r["ids"], rows["gemma_kit f32"]["ids"])
    print(f"\nPlain decoding, Gemma 3 270M, batch 1, greedy, {len(ids)}-token prompt, N = {args.max_new_tokens}; "
          f"load average {load_average()} ({os.cpu_count()} cores); gemma_kit {gemma_kit.__version__}")
    table(["system", "load s", "first call s", "t1 s", "tN s", "e2e tok/s", "decode tok/s", "ids = gemma_kit f32"],
          [[r["name"], f"{r['load']:.1f}", f"{r['first']:.1f}", f"{r['t1']:.2f}", f"{r['tn']:.2f}",
            f"{r['e2e']:.1f}", f"{r['decode']:.1f}", r["same"]] for r in rows.values()])
    names = {s: systems[s].name for s in ("f32", "int8", "keras_hub", "llama") if systems.get(s)}
    pairs = [("int8", "f32"), ("int8", "keras_hub"), ("int8", "llama"), ("f32", "keras_hub")]
    table(["ratio", "e2e tok/s", "decode tok/s"],
          [[f"{names[a]} / {names[b]}", f"{rows[names[a]]['e2e'] / rows[names[b]]['e2e']:.2f}x",
            f"{rows[names[a]]['decode'] / rows[names[b]]['decode']:.2f}x"] for a, b in pairs if a in names and b in names])
    if "llama" in names:
        targets.append(("int8 decode >= 0.8x llama.cpp Q4_K_M", rows[names["int8"]]["decode"] /
                        rows[names["llama"]]["decode"], lambda v: v >= 0.8))


def grounded_prompt(snippets=4, first=4):
    """``snippets`` consecutive code snippets of the FIM test set (their gap filled), then the instruction."""
    path = os.path.join(HERE, "..", "data", "stdlib_fim_test.jsonl")
    rows = [json.loads(line) for line in open(path)][first:first + snippets]
    code = "\n\n".join(r["prompt"].split("\n", 1)[1].strip("\n").replace("<FILL>", r["response"]) for r in rows)
    return f"```python\n{code}\n```\n\nThe same code, with comments removed:\n```python\n"


def part_grounded(systems, args, targets):
    from gemma_kit.drafting import PromptLookup

    lookup = PromptLookup(ngram=args.lookup_ngram, max_draft=args.lookup_draft)
    f32, int8 = systems["f32"].model, systems["int8"].model
    chosen = [GemmaKit("gemma_kit int8", int8, 0), GemmaKit("gemma_kit int8 + prompt lookup", int8, 0, lookup),
              GemmaKit("gemma_kit f32", f32, 0), GemmaKit("gemma_kit f32 + prompt lookup", f32, 0, lookup)]
    if systems.get("llama"):
        chosen += [LlamaCpp(systems["llama"].worker),
                   LlamaCpp(systems["llama"].worker, dict(ngram=args.lookup_ngram, draft=args.lookup_draft))]
    ids, n = f32.encode_prompt(grounded_prompt()), args.max_new_tokens
    rows = take_turns(chosen, ids, n, args.rounds)
    for name, r in rows.items():                              # speculative output must be the plain one
        plain = name.replace(" + prompt lookup", "")
        r["same"] = same_ids(r["ids"], rows[plain]["ids"]) if plain != name else ""
        r["same_f32"] = same_ids(r["ids"], rows["gemma_kit f32"]["ids"])
    print(f"\nInput-grounded task ({len(ids)}-token prompt: 4 code snippets, then 'The same code, with comments "
          f"removed'), N = {n}, prompt lookup ngram {args.lookup_ngram}, draft {args.lookup_draft}; "
          f"load average {load_average()}")
    table(["system", "t1 s", "tN s", "e2e tok/s", "decode tok/s", "accept", "tok/call", "= plain", "= gemma_kit f32"],
          [[r["name"], f"{r['t1']:.2f}", f"{r['tn']:.2f}", f"{r['e2e']:.1f}", f"{r['decode']:.1f}",
            f"{r['accepted'] / r['drafted']:.2f}" if r["drafted"] else "", f"{n / r['calls']:.2f}", r["same"],
            r["same_f32"]]
           for r in rows.values()])
    ours, ours_plain = "gemma_kit int8 + prompt lookup", "gemma_kit int8"
    theirs = "llama.cpp Q4_K_M + prompt lookup"
    lines = [(f"{ours} / {ours_plain}", ours, ours_plain), ("gemma_kit f32 + prompt lookup / gemma_kit f32",
             "gemma_kit f32 + prompt lookup", "gemma_kit f32"), (f"{ours} / {theirs}", ours, theirs),
             (f"{theirs} / llama.cpp Q4_K_M", theirs, "llama.cpp Q4_K_M")]
    table(["ratio", "e2e tok/s", "decode tok/s"],
          [[label, f"{rows[a]['e2e'] / rows[b]['e2e']:.2f}x", f"{rows[a]['decode'] / rows[b]['decode']:.2f}x"]
           for label, a, b in lines if a in rows and b in rows])
    for precision in ("f32", "int8"):
        spec, plain = f"gemma_kit {precision} + prompt lookup", f"gemma_kit {precision}"
        speedup = rows[spec]["e2e"] / rows[plain]["e2e"] if rows[spec]["same"] == "yes" else 0.0
        targets.append((f"prompt lookup >= 2x plain greedy ({precision}, e2e), identical output", speedup,
                        lambda v: v >= 2))
    if theirs in rows:                    # ours: the faster of float32 and int8 with prompt lookup
        best = max(("gemma_kit f32 + prompt lookup", ours), key=lambda name: rows[name]["e2e"])
        targets.append((f"{best} >= llama.cpp's prompt lookup (e2e)", rows[best]["e2e"] / rows[theirs]["e2e"],
                        lambda v: v >= 1))


def part_accuracy(systems, args, targets):
    f32, int8 = systems["f32"].model, systems["int8"].model
    lines, equal = [], 0
    for prompt in EVERYDAY_PROMPTS:
        ids = f32.encode_prompt(prompt)
        a, b = f32.generate_ids([ids], 32, stop_tokens=[])[0], int8.generate_ids([ids], 32, stop_tokens=[])[0]
        differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        if not differ:
            equal += 1
            lines.append([repr(prompt), "yes", "", ""])
            continue
        top2 = np.sort(f32.logits(ids + a[:differ[0]])[0, -1])[-2:]                  # float32's two best logits
        lines.append([repr(prompt), "no", differ[0], f"{top2[1] - top2[0]:.3f}"])
    sequence = f32.encode_prompt(EVERYDAY_PROMPTS[0])
    sequence += f32.generate_ids([sequence], 32, stop_tokens=[])[0]
    reference = f32.logits(sequence)[0]                                                # (seq, vocab)
    error = np.abs(int8.logits(sequence)[0] - reference)
    print(f"\nint8 against float32: {len(EVERYDAY_PROMPTS)} prompts x 32 greedy tokens")
    table(["prompt", "int8 ids = f32 ids", "first differing step", "f32 top-2 logit margin there"], lines)
    print(f"\nlogits over {len(sequence)} positions of {EVERYDAY_PROMPTS[0]!r} + 32 tokens: max |int8 - f32| "
          f"{error.max():.3f}, mean {error.mean():.4f}; f32 logits span {reference.min():.1f} ... {reference.max():.1f}")
    targets.append(("int8 greedy = float32 greedy on >= 4 of 5 prompts", equal, lambda v: v >= 4))


# The peak is VmHWM, this process's own high-water mark: ``ru_maxrss`` survives ``exec`` on Linux,
# so a child started by this (big) process would report the parent's size.
MEMORY_CHILD = """
import json, sys, numpy as np, gemma_kit
model = gemma_kit.load("gemma3_270m", quantize=sys.argv[1] or None)
weights = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.backbone.weights)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_mb": peak_kb / 1024, "weights_mb": weights / 2**20}))
"""


def child(code, *argv, env=None):
    """Run ``code`` in a fresh Python (``KERAS_BACKEND=jax``); its last stdout line, as JSON."""
    env = {**os.environ, "KERAS_BACKEND": "jax", **(env or {})}
    done = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode:
        raise RuntimeError(f"a child process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_memory(args, targets):
    runs = {"float32": [], "int8": []}
    for _ in range(args.rounds):
        for name in runs:
            runs[name].append(child(MEMORY_CHILD, "" if name == "float32" else name))
    rows = {name: {k: statistics.median(r[k] for r in v) for k in v[0]} for name, v in runs.items()}
    print(f"\nPeak RSS of a fresh process after gemma_kit.load('gemma3_270m') (median of {args.rounds}); "
          f"load average {load_average()}")
    table(["weights", "weights MiB", "peak RSS MB"],
          [[name, f"{r['weights_mb']:.0f}", f"{r['peak_mb']:.0f}"] for name, r in rows.items()]
          + [["int8 / float32", f"{rows['int8']['weights_mb'] / rows['float32']['weights_mb']:.2f}x",
              f"{rows['int8']['peak_mb'] / rows['float32']['peak_mb']:.2f}x"]])
    targets.append(("int8 peak RSS <= 0.5x float32", rows["int8"]["peak_mb"] / rows["float32"]["peak_mb"],
                    lambda v: v <= 0.5))


CHAT_LONG_MESSAGES = [
    "I am planning a weekend trip to the mountains with two friends. We want to hike during the day and cook "
    "our own dinners at the cabin we rented, which has a small kitchen with two burners and an oven. None of "
    "us eats meat, one friend cannot eat nuts, and we will carry everything in one car. What should we bring?",
    "Thanks. The weather forecast now says it will rain on Saturday afternoon and be cold at night, close to "
    "freezing, and the cabin only has a wood stove for heating. We also found out that the nearest shop closes "
    "at six in the evening and is a forty minute drive from the cabin. How should we change our plans and list?",
    "One more question about Sunday. We have to leave the cabin by eleven in the morning and return the key to "
    "the owner in the village, and we would still like a short walk with a view before driving home, which "
    "takes about three hours. Can you suggest a timetable for Sunday morning, with breakfast and packing?",
]


def chat_conversations():
    """{name: messages}: a text pasted in the first turn, then short questions about it (what a
    chat with a document looks like); and three long messages of about the same size."""
    import textwrap

    pasted = textwrap.dedent(textwrap.__doc__ or "") + "\n" + (textwrap.dedent.__doc__ or "")
    pasted += "\n" + (textwrap.TextWrapper.__doc__ or "")
    return {"pasted text, short questions": [f"Read this documentation:\n\n{pasted}\n\nWhat is the module for?",
                                             "Which function removes common leading whitespace?",
                                             "Give one example of calling it."],
            "three long messages": CHAT_LONG_MESSAGES}


def part_chat(systems, args, targets):
    model = systems["f32"].model
    tokenizer = model.tokenizer

    def with_session(messages):
        session, out = model.chat(), []
        for message in messages:
            answer, seconds = timed(lambda: session.send(message, max_new_tokens=32))
            out.append(dict(answer=answer, seconds=seconds, fed=session.last_turn.prompt_tokens,
                            prefill=session.last_turn.prefill_seconds))
        return out

    def rerun(messages):
        history, out = [], []
        for message in messages:
            history.append({"role": "user", "content": message})
            text = tokenizer.apply_chat_template(history, add_generation_prompt=True)
            ids, started = tokenizer.encode(text, add_bos=True), time.perf_counter()
            answer = tokenizer.decode(model.generate_ids([ids], 32)[0])
            seconds = time.perf_counter() - started
            prefill = timed(lambda: model.generate_ids([ids], 1))[1]       # the same prompt, one token
            history.append({"role": "model", "content": answer})
            out.append(dict(answer=answer, seconds=seconds, fed=len(ids), prefill=prefill))
        return out

    for conversation, messages in chat_conversations().items():
        ways = {"model.chat()": lambda: with_session(messages), "generate, whole conversation": lambda: rerun(messages)}
        for way in ways.values():
            way()                                                       # compile every shape, untimed
        runs = {name: [] for name in ways}
        for round_ in range(args.rounds):
            for name, way in ways.items():                              # the two take turns
                runs[name].append(way())
            print(f"chat ({conversation}) round {round_ + 1}: " + "; ".join(
                f"{name} " + " ".join(f"{t['seconds']:.2f}" for t in r[-1]) + " s" for name, r in runs.items())
                + f"; load average {load_average()}", flush=True)
        median = {name: [{key: statistics.median(run[turn][key] for run in r) if key != "answer" else r[0][turn][key]
                          for key in r[0][turn]} for turn in range(len(messages))] for name, r in runs.items()}
        rerun_turns = median["generate, whole conversation"]
        print(f"\nChat ({conversation}), {len(messages)} turns, float32, 32 new tokens a turn (median of "
              f"{args.rounds} rounds); load average {load_average()}.\nprefill s: until the first new token (the "
              f"session: its tokens fed; the rerun: generate_ids(..., 1) on the whole conversation). The 32 tokens' "
              f"decoding costs both ways the same.")
        table(["turn", "way", "tokens fed", "prefill s", "/ rerun", "turn s", "/ rerun", "same answer as rerun"],
              [[turn + 1, name, int(t["fed"]), f"{t['prefill']:.2f}", f"{t['prefill'] / rerun_turns[turn]['prefill']:.2f}x",
                f"{t['seconds']:.2f}", f"{t['seconds'] / rerun_turns[turn]['seconds']:.2f}x",
                "yes" if t["answer"] == rerun_turns[turn]["answer"] else "NO"]
               for turn in range(len(messages)) for name, t in ((n, median[n][turn]) for n in median)])
        ours = median["model.chat()"][1]
        targets.append((f"second chat turn's prompt < 0.3x re-running the conversation's (prefill; {conversation})",
                        ours["prefill"] / rerun_turns[1]["prefill"], lambda v: v < 0.3))
        targets.append((f"second chat turn, prompt + 32 new tokens, < 0.3x re-running ({conversation})",
                        ours["seconds"] / rerun_turns[1]["seconds"], lambda v: v < 0.3))


FIRST_CALL_CHILD = """
import json, sys, time
started = time.perf_counter()
prompt = "The capital of France is"
if sys.argv[1] == "keras-hub":                      # what a keras-hub user runs: a preset folder on disk
    import keras_hub
    imported = time.perf_counter()
    model = keras_hub.models.Gemma3CausalLM.from_preset(sys.argv[2])
    model.compile(sampler="greedy")
    length = len(model.preprocessor.tokenizer(prompt)) + 1 + 32          # <bos> + prompt + 32 new tokens
    loaded = time.perf_counter()
    model.generate(prompt, max_length=length, stop_token_ids=None)
else:
    import gemma_kit
    imported = time.perf_counter()
    model = gemma_kit.load("gemma3_270m", quantize=None if sys.argv[1] == "f32" else sys.argv[1])
    loaded = time.perf_counter()
    model.generate_ids([model.encode_prompt(prompt)], 32, stop_tokens=[])
done = time.perf_counter()
print(json.dumps({"import_s": imported - started, "load_s": loaded - imported, "generate_s": done - loaded}))
"""

PRESET_CHILD = """
import json, sys, gemma_kit
from gemma_kit.export.keras_hub import save_preset
print(json.dumps({"folder": save_preset(gemma_kit.load("gemma3_270m"), sys.argv[1])}))
"""


def part_startup(args, targets):
    preset = child(PRESET_CHILD, tempfile.mkdtemp(prefix="keras_hub_gemma3_270m_"))["folder"]    # untimed
    systems = {f"gemma_kit {p}, {state} compile cache": [p] for p in ("f32", "int8") for state in ("empty", "warm")}
    systems["keras-hub f32"] = ["keras-hub", preset]
    runs = {name: [] for name in systems}
    for round_ in range(args.rounds):
        caches = {p: tempfile.mkdtemp(prefix="gemma_kit_jax_cache_") for p in ("f32", "int8", "keras-hub")}
        for name, argv in systems.items():                 # each precision: its empty cache, then warm
            runs[name].append(child(FIRST_CALL_CHILD, *argv, env={"GEMMA_KIT_JAX_CACHE": caches[argv[0]]}))
        print(f"start-up round {round_ + 1}: " + ", ".join(
            f"{name} {r[-1]['load_s'] + r[-1]['generate_s']:.1f} s" for name, r in runs.items())
            + f"; load average {load_average()}", flush=True)
    median = {name: {k: statistics.median(r[k] for r in v) for k in v[0]} for name, v in runs.items()}
    for m in median.values():
        m["first_s"] = m["load_s"] + m["generate_s"]
    kh = median["keras-hub f32"]
    print(f"\nFirst call in a fresh process (median of {args.rounds} rounds); load average {load_average()}. "
          f"keras-hub loads a preset folder (save_to_preset of the same weights, written once, untimed).")
    table(["system", "import s", "load s", "first generation s", "first call s (load + generation)", "/ keras-hub"],
          [[name, f"{m['import_s']:.1f}", f"{m['load_s']:.1f}", f"{m['generate_s']:.1f}", f"{m['first_s']:.1f}",
            f"{m['first_s'] / kh['first_s']:.2f}x"] for name, m in median.items()])
    for name in list(median)[:-1]:
        targets.append((f"first call <= 0.5x keras-hub ({name})", median[name]["first_s"] / kh["first_s"],
                        lambda v: v <= 0.5))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, from " + ",".join(PARTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt", default="The capital of France is", help="the decode part's prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--lookup-ngram", type=int, default=3, help="prompt lookup: longest n-gram matched")
    parser.add_argument("--lookup-draft", type=int, default=4, help="prompt lookup: tokens drafted per pass")
    parser.add_argument("--skip-keras-hub", action="store_true")
    parser.add_argument("--llama-python", default=LLAMA_PYTHON if os.path.exists(LLAMA_PYTHON) else sys.executable,
                        help="the interpreter that has llama_cpp (default: `make bench-llama`'s venv, if built)")
    parser.add_argument("--llama-threads", type=int, default=2)
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    if args.max_new_tokens < 2 or args.rounds < 1:
        parser.error("--max-new-tokens must be at least 2 (decode speed subtracts the first token) and --rounds >= 1")
    os.environ["GEMMA_KIT_JAX_CACHE"] = tempfile.mkdtemp(prefix="gemma_kit_jax_cache_")   # first calls compile
    began = time.perf_counter()
    print(f"load average at start: {load_average()} ({os.cpu_count()} cores)", flush=True)

    systems, targets = {}, []
    if {"decode", "grounded", "accuracy", "chat"} & set(parts):          # load every system first
        import gemma_kit

        systems["f32"] = GemmaKit("gemma_kit f32", *timed(lambda: gemma_kit.load("gemma3_270m")))
        systems["int8"] = GemmaKit("gemma_kit int8", *timed(lambda: gemma_kit.load("gemma3_270m", quantize="int8")))
        if "decode" in parts and not args.skip_keras_hub:
            systems["keras_hub"] = KerasHub(systems["f32"].model)
        if {"decode", "grounded"} & set(parts):
            worker = LlamaCppWorker.start(args.llama_python, args.llama_threads)
            systems["llama"] = worker and LlamaCpp(worker)
    for part in parts:
        print(f"\n== {part} (load average {load_average()}) ==", flush=True)
        {"decode": lambda: part_decode(systems, args, targets), "grounded": lambda: part_grounded(systems, args, targets),
         "accuracy": lambda: part_accuracy(systems, args, targets), "memory": lambda: part_memory(args, targets),
         "chat": lambda: part_chat(systems, args, targets), "startup": lambda: part_startup(args, targets)}[part]()
    if systems.get("llama"):
        systems["llama"].worker.stop()

    print(f"\nTargets (issue 14); load average {load_average()}; {time.perf_counter() - began:.0f} s in all")
    table(["target", "measured", ""], [[label, f"{value:.3f}", "PASS" if ok(value) else "MISS"]
                                       for label, value, ok in targets])


if __name__ == "__main__":
    main()
