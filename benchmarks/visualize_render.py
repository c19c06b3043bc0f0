"""How long each gemma_kit.visualize view takes to draw for a long input (default 2,000 tokens).

    python benchmarks/visualize_render.py                  # the real Gemma 3 270M, 2,000 tokens
    python benchmarks/visualize_render.py --tokens 500

It captures the real Gemma 3 270M once on a text of ``--tokens`` tokens (the capture time
is printed separately: it is a forward pass, not drawing), then times, with
``time.perf_counter`` around the draw *and* the PNG encoding (what a notebook shows),
each static figure and each explorer redraw (layer change, head change, view change,
a token click, whose first logit lens at that position is included). The target is
under 2 s per view; the script prints PASS/MISS per view. There is no peer: bertviz, the
tool teachers use, draws in the browser with JavaScript and does not pool or crop.
"""

import argparse
import io
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

import gemma_kit  # noqa: E402
from gemma_kit import visualize as viz  # noqa: E402

TARGET_S = 2.0


def png_seconds(make_figure):
    start = time.perf_counter()
    make_figure().savefig(io.BytesIO(), format="png", dpi=80)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--model", default="gemma3_270m")
    args = parser.parse_args()

    model = gemma_kit.load(args.model)
    sentence = "The quick brown fox jumps over the lazy dog, and then it rests. "
    ids = model.encode_prompt(sentence * (args.tokens // 8))[:args.tokens]
    start = time.perf_counter()
    cap = viz.run_and_capture(model, ids)
    print(f"capture of {cap.seq_len} tokens, {cap.num_layers} layers: {time.perf_counter() - start:.1f} s "
          f"(a forward pass, eager; {sum(a.nbytes for a in cap.attention) / 2**30:.2f} GiB of probabilities)")

    last_local = max(i for i, k in enumerate(cap.layer_kinds) if k == "local")
    results = {
        "attention_grid (all layers x heads)": png_seconds(lambda: viz.attention_grid(cap)),
        "attention_heatmap (one layer, mean)": png_seconds(lambda: viz.attention_heatmap(cap, 0)),
        "attention_heatmap (window-masked)": png_seconds(lambda: viz.attention_heatmap(cap, last_local,
                                                                                       masked_view=True)),
        "head_lines (cropped to 40 tokens)": png_seconds(lambda: viz.head_lines(cap, 0, 0)),
        "layer_map": png_seconds(lambda: viz.layer_map(cap)),
        "logit_lens + table": png_seconds(lambda: viz.logit_lens_figure(viz.logit_lens(cap, cap.seq_len // 2))),
    }
    start = time.perf_counter()
    explorer = viz.AttentionExplorer(cap)
    results["explorer: first picture"] = time.perf_counter() - start
    for name, change in (("explorer: layer slider", lambda: setattr(explorer.layer, "value", last_local)),
                         ("explorer: head", lambda: setattr(explorer.head, "value", 1)),
                         ("explorer: window-masked view", lambda: setattr(explorer.view, "value", "window-masked")),
                         ("explorer: click a token", lambda: setattr(explorer.tokens, "value",
                                                                     explorer.tokens.options[0][1]))):
        start = time.perf_counter()
        change()
        results[name] = time.perf_counter() - start
    width = max(map(len, results))
    print(f"\n{'view':<{width}}  seconds  (target < {TARGET_S} s, {cap.seq_len} tokens, "
          f"backend {os.environ['KERAS_BACKEND']}, load average {os.getloadavg()[0]:.1f})")
    for name, seconds in results.items():
        print(f"{name:<{width}}  {seconds:7.2f}  {'PASS' if seconds < TARGET_S else 'MISS'}")
    print(f"worst: {max(results.values()):.2f} s")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
