"""Gemma 4 GGUF files in llama.cpp and in gemma_kit: the same greedy tokens, and how close the logits are.

    python benchmarks/gemma4_llama_cpp.py [--steps 24] [--prompt-length 12] [--threads 2]

For each tiny random Gemma 4 of ``tests/gemma4_tiny.py`` (``e2b``: per-layer embeddings, KV
sharing, double-wide MLP; ``moe``: experts, keys as values; ``dense``: keys as values), this
writes an F32 GGUF file the way llama.cpp's converter does (``tests/tiny_gguf.py``,
``write_gemma4_gguf``), then decodes greedily from the same prompt token ids in

- llama.cpp (its Python binding ``llama_cpp``): the prompt, then one token at a time, each the
  argmax of the last logits (no sampler), KV cache in float32;
- gemma_kit: ``gemma_kit.load(path).generate_ids(..., stop_tokens=[])`` (greedy);

and prints both token lists, whether they agree, and the largest logit difference over the whole
sequence (gemma_kit's full forward pass on the sequence llama.cpp decoded).

On a CPU, llama.cpp's GELU rounds its input to float16 and looks the answer up in a float16 table
(``GGML_GELU_FP16`` in ``ggml/src/ggml-cpu/vec.h``), which moves the logits by ~1e-2. So a third
line runs transformers, on the same weights, with that table emulated (``ggml_gelu``): what is left
between it and llama.cpp is what the file mapping could have got wrong. For the MoE model it also
prints the narrowest routing decision (k-th against (k+1)-th expert probability): when two experts
are nearly tied, the float16 GELU can pick the other one, and the tokens part from there on.

llama.cpp's binding is not a dependency of the kit (it compiles llama.cpp from source: 39 minutes
on a busy 2-core machine, without the multimodal library). To install it into the venv:

    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \\
                -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \\
        .venv/bin/pip install llama-cpp-python

Its llama.cpp must know the ``gemma4`` architecture (llama-cpp-python 0.3.36 does).
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import numpy as np  # noqa: E402


def llama_cpp_greedy(path, prompt, steps, threads):
    """(generated ids, logits of every position (len(prompt) + steps - 1, vocab)) from llama.cpp."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_ctx=len(prompt) + steps + 8, n_batch=64, logits_all=True,
                          n_threads=threads, type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32,
                          verbose=False)
    llm.reset()
    llm.eval(prompt)
    generated = []
    for _ in range(steps):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))          # greedy: no sampler involved
        generated.append(token)
        if len(generated) < steps:
            llm.eval([token])
    return generated, np.array(llm.scores[:llm.n_tokens], np.float32)


def ggml_gelu(x):
    """llama.cpp's CPU GELU: tanh GELU of float16(x), rounded to float16; 0 below -10, x above 10."""
    import torch

    table = torch.nn.functional.gelu(x.half().float(), approximate="tanh").half().float()
    return torch.where(x <= -10, torch.zeros_like(x), torch.where(x >= 10, x, table))


def with_ggml_gelu(model):
    """A copy of a transformers Gemma 4 whose every GELU (MLP, experts, per-layer input) is ``ggml_gelu``."""
    import copy

    import torch

    class GgmlGelu(torch.nn.Module):
        def forward(self, x):
            return ggml_gelu(x)

    model = copy.deepcopy(model)
    for name in [n for n, _ in model.named_modules() if n.endswith("act_fn")]:
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, GgmlGelu())
    return model


def narrowest_routing(model, ids):
    """(layer, position, p_k - p_k+1): the closest call between the k-th and (k+1)-th expert, in transformers."""
    import torch

    from gemma4_tiny import hf_logits

    logits = {}
    hooks = [layer.router.proj.register_forward_hook(lambda module, inputs, out, i=i: logits.__setitem__(i, out))
             for i, layer in enumerate(model.model.layers)]
    hf_logits(model, ids)
    for hook in hooks:
        hook.remove()
    k, best = model.config.top_k_experts, (None, None, np.inf)
    for layer, value in logits.items():
        probs = np.sort(torch.softmax(value.float().reshape(len(ids), -1), -1).detach().numpy(), -1)[:, ::-1]
        margins = probs[:, k - 1] - probs[:, k]                              # (seq,)
        if margins.min() < best[2]:
            best = (layer, int(margins.argmin()), float(margins.min()))
    return best


def transformers_greedy(model, prompt, steps):
    import torch

    model.generation_config.eos_token_id = None
    out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         max_new_tokens=steps, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--prompt-length", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama_cpp is not installed: see the install line at the top of this script")

    import gemma_kit
    from gemma4_tiny import VARIANTS, VOCAB, build_hf, hf_logits
    from tiny_gguf import write_gemma4_gguf

    print(f"llama-cpp-python {llama_cpp.__version__}; gemma_kit on {os.environ['KERAS_BACKEND']}")
    prompt = [2] + np.random.default_rng(0).integers(4, VOCAB, size=args.prompt_length - 1).tolist()
    folder = tempfile.mkdtemp()
    agreed = []
    for i, variant in enumerate(VARIANTS):
        hf = build_hf(variant, seed=i)
        path = write_gemma4_gguf(os.path.join(folder, f"{variant}.gguf"), hf)
        theirs, their_logits = llama_cpp_greedy(path, prompt, args.steps, args.threads)
        model = gemma_kit.load(path)
        ours = model.generate_ids([prompt], args.steps, stop_tokens=[])[0]
        our_logits = model.logits(prompt + theirs[:-1])[0]                   # the sequence llama.cpp saw
        first = next((j for j, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
        agreed.append(first is None)
        print(f"\n{variant}")
        print(f"  llama.cpp : {theirs}")
        print(f"  gemma_kit : {ours}")
        print(f"  tokens agree: {'yes' if first is None else f'no, first difference at step {first}'}")
        print(f"  max |logits llama.cpp - gemma_kit| over {len(their_logits)} positions: "
              f"{np.abs(their_logits - our_logits).max():.2e} (logits up to {np.abs(our_logits).max():.1f})")
        emulated = with_ggml_gelu(hf)
        same = transformers_greedy(emulated, prompt, args.steps) == theirs
        error = np.abs(their_logits - hf_logits(emulated, prompt + theirs[:-1])[0]).max()
        print(f"  transformers with llama.cpp's float16 GELU: max |logits - llama.cpp| {error:.2e}, "
              f"greedy tokens {'equal' if same else 'differ from'} llama.cpp's")
        if hf.config.enable_moe_block:
            layer, position, margin = narrowest_routing(hf, prompt + theirs[:-1])
            print(f"  narrowest expert choice: layer {layer}, position {position}, "
                  f"p(k-th) - p(k+1-th) = {margin:.1e}")
    print(f"\n{sum(agreed)} of {len(agreed)} variants give the same greedy tokens")


if __name__ == "__main__":
    main()
