"""Tuning: LoRA adapters on any gemma_kit model, trained with Keras ``fit``.

    from gemma_kit import tuning
    tuning.enable_lora(model, rank=4, targets=("query", "value"))        # lora.py
    data = tuning.format_examples(model.tokenizer, examples, 256, 32)    # data.py
    trainer = tuning.compile_for_training(tuning.ResponseLM(model.backbone), 2e-3)   # train.py
    batches = tuning.TrainingBatches(data, batch_size=4, steps_per_epoch=25)
    trainer.fit(batches, epochs=8, shuffle=False, callbacks=[batches.epoch_callback,
                                                             tuning.TrainingCheckpoint("run/")])   # checkpoint.py
    tuning.save_adapter(model, "fix.lora.safetensors")                   # adapters.py
    tuning.export_peft(model, "peft-adapter/")                           # peft_export.py
"""

from .adapters import AdapterMismatchError, load_adapter, read_adapter_metadata, save_adapter
from .checkpoint import TrainingCheckpoint
from .data import TrainingBatches, fits, format_examples, load_jsonl, select
from .evaluate import LossHistory, exact_match, held_out_loss
from .lora import enable_lora, lora_layers, lora_state, lora_variables, merge_lora, parameter_counts, remove_lora
from .peft_export import export_peft
from .qlora import quantize_base, weight_bytes
from .train import ResponseLM, compile_for_training

__all__ = ["enable_lora", "merge_lora", "remove_lora", "lora_layers", "lora_state", "lora_variables",
           "parameter_counts", "format_examples", "fits", "load_jsonl", "select", "TrainingBatches",
           "TrainingCheckpoint", "ResponseLM", "compile_for_training",
           "save_adapter", "load_adapter", "read_adapter_metadata", "AdapterMismatchError",
           "export_peft", "quantize_base", "weight_bytes", "LossHistory", "exact_match", "held_out_loss"]
