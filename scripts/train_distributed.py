"""Fine-tune a Gemma on a mesh of devices: a TPU VM, a multi-GPU machine, or simulated CPU devices.

    # Kaggle / Cloud TPU v3-8 (8 cores): Gemma 7B split over all 8, LoRA rank 4
    python scripts/train_distributed.py --model gemma_7b_en --mesh 1x8 --data my.jsonl --lora-rank 4 --dtype bfloat16
    # two T4 GPUs
    python scripts/train_distributed.py --model gemma2_9b_en --mesh 1x2 --data my.jsonl --dtype bfloat16
    # a laptop: 8 simulated CPU devices, the embedded Gemma 3 270M, 2 replicas x 4-way model parallel
    python scripts/train_distributed.py --simulate-devices 8 --mesh 2x4 --data my.jsonl --steps 4

The data is JSON Lines, one ``{"prompt": ..., "response": ...}`` per line (``gemma_kit.tuning``).
On several hosts, run the same command on each with the cluster's environment variables
set (see ``gemma_kit/distributed/launch.py``). Everything here is the library's:
``gemma_kit.distributed`` places the weights, ``gemma_kit.tuning`` adds LoRA, formats the
data and compiles; Keras ``fit`` trains. Needs the JAX backend (``keras.distribution``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma3_270m",
                        help="a model name (gemma3_270m, keras-hub presets such as gemma_2b_en) or a checkpoint path")
    parser.add_argument("--mesh", default=None, help="DATAxMODEL, e.g. 1x8, 2x4, 8x1 (default: 1xN, all devices)")
    parser.add_argument("--data", required=True, help="JSON Lines file of {'prompt', 'response'} examples")
    parser.add_argument("--lora-rank", type=int, default=4, help="LoRA rank; 0 = full fine-tuning")
    parser.add_argument("--lora-targets", default="query,value", help="comma-separated Dense layer names or groups")
    parser.add_argument("--batch-size", type=int, default=8, help="global batch (split over the data axis)")
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--response-length", type=int, default=64, help="logits are computed for this many tokens")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--dtype", default=None, help="float32 (default) or bfloat16")
    parser.add_argument("--simulate-devices", type=int, default=None,
                        help="CPU only: pretend to have N devices (sets XLA_FLAGS before JAX starts)")
    parser.add_argument("--save-adapter", default=None, help="write the LoRA adapter here (.lora.safetensors)")
    parser.add_argument("--prompt", default=None, help="generate from this prompt after training")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.simulate_devices:                      # must happen before the first import of jax
        if "jax" in sys.modules:
            raise RuntimeError("--simulate-devices must be set before JAX is imported")
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={args.simulate_devices}")
    if os.environ.setdefault("KERAS_BACKEND", "jax") != "jax":
        raise SystemExit(f"keras.distribution needs the JAX backend, not KERAS_BACKEND={os.environ['KERAS_BACKEND']}")

    import keras

    from gemma_kit import distributed, read_config, tuning

    cluster = distributed.initialize()             # several hosts: join them first (no-op on one)
    if cluster is not None:
        print(f"joined a cluster of {cluster.num_processes or 'auto-detected'} processes ({cluster.source})")
    devices = keras.distribution.list_devices()
    mesh = args.mesh or f"1x{len(devices)}"
    distributed.check_mesh_fits_devices(mesh, len(devices))
    distributed.check_batch_size(mesh, args.batch_size)
    config = read_config(args.model)
    print(distributed.device_memory(config, mesh, dtype=args.dtype or "float32", optimizer="adamw",
                                    lora_rank=args.lora_rank or None))

    dist = distributed.make_distribution(config, mesh)
    started = time.perf_counter()
    model = distributed.load(args.model, dist, dtype=args.dtype)
    print(f"loaded {args.model} on mesh {mesh} ({len(devices)} {devices[0].split(':')[0]} devices) "
          f"in {time.perf_counter() - started:.1f} s")
    if args.lora_rank:
        distributed.add_lora(model, dist, rank=args.lora_rank, targets=tuple(args.lora_targets.split(",")),
                             verbose=True)

    examples = tuning.load_jsonl(args.data)
    data = tuning.format_examples(model.tokenizer, examples, args.sequence_length, args.response_length)
    batches = tuning.TrainingBatches(data, args.batch_size, args.steps)
    with dist.scope():                              # optimizer slots take their weights' layouts
        trainer = tuning.compile_for_training(tuning.ResponseLM(model.backbone), args.learning_rate)
        history = trainer.fit(batches, epochs=args.epochs, shuffle=False, callbacks=[batches.epoch_callback])
    print("loss per epoch:", [round(loss, 4) for loss in history.history["loss"]])

    if args.save_adapter and args.lora_rank:
        tuning.save_adapter(model, args.save_adapter)
        print(f"adapter written to {args.save_adapter}")
    if args.prompt:
        prompt = model.tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}])
        print(model.generate(prompt, max_new_tokens=32))
    return history.history["loss"]


if __name__ == "__main__":
    main()
