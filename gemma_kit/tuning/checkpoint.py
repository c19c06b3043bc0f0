"""Checkpoints that resume a LoRA run exactly: the trainable weights and the optimizer's state.

    batches = TrainingBatches(data, batch_size=4, steps_per_epoch=25)     # one "epoch" = 25 steps
    checkpoint = TrainingCheckpoint("runs/fim")                          # saved after every epoch
    trainer.fit(batches, epochs=8, shuffle=False, callbacks=[batches.epoch_callback, checkpoint])
    # killed during epoch 5? Run the same fit again: it restarts at epoch 5 from the epoch-4 state.

Why not ``keras.callbacks.BackupAndRestore``, which does the same for full models? Checked on
Keras 3.15: (1) it restores the epoch but not the batch inside it (the saved batch number is
never read), which ``TrainingBatches`` handles by making an epoch as short as the checkpoint
interval; (2) it saves with ``model.save_weights``, and a LoRA ``Dense`` saves its kernel with
``A @ B`` merged in and, when loaded, puts the merged kernel in the frozen weight and resets
``A`` and ``B`` to zero. The function is kept but the LoRA factors are lost: the resumed run
follows a different loss curve. This callback saves exactly what training changes: the
trainable variables (the LoRA matrices) and the optimizer's variables (step count, Adam
moments, gradient accumulators), by name, in one ``.npz`` written atomically.
"""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import ops

FILE = "checkpoint.npz"


class TrainingCheckpoint(keras.callbacks.Callback):
    """Save after every epoch to ``directory``; on ``fit`` start, resume from it if present.

    ``delete_on_success``: remove the file when ``fit`` finishes normally (as BackupAndRestore does).
    """

    def __init__(self, directory, delete_on_success: bool = True):
        super().__init__()
        self.path = os.path.join(os.fspath(directory), FILE)
        self.delete_on_success = delete_on_success
        self.resumed_from = None            # the epoch a resumed fit started at

    def _state(self):
        """{name: variable}: the model's trainable variables and all of the optimizer's."""
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        # Names without the model's and optimizer's own (Keras numbers them: "adam_w_2").
        state = {f"model/{v.path.split('/', 1)[-1]}": v for v in self.model.trainable_variables}
        state.update({f"optimizer/{i}/{v.path.split('/', 1)[-1]}": v for i, v in enumerate(optimizer.variables)})
        return state

    def on_train_begin(self, logs=None):
        if not os.path.isfile(self.path):
            return
        saved, state = np.load(self.path), self._state()
        missing = sorted(set(state) - set(saved.files))
        if missing:
            raise ValueError(f"{self.path} does not belong to this training run: it lacks {missing[:3]}")
        for name, variable in state.items():
            if tuple(saved[name].shape) != tuple(variable.shape):
                raise ValueError(f"{self.path}: {name} has shape {saved[name].shape}, expected {variable.shape}")
            variable.assign(saved[name])
        # The same hook BackupAndRestore uses: fit reads it after on_train_begin.
        self.model._initial_epoch = self.resumed_from = int(saved["epoch"])

    def on_epoch_end(self, epoch, logs=None):
        values = {name: ops.convert_to_numpy(v) for name, v in self._state().items()}
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        partial = self.path + ".partial.npz"
        np.savez(partial, epoch=np.int64(epoch + 1), **values)
        os.replace(partial, self.path)      # never a half-written checkpoint

    def on_train_end(self, logs=None):
        if self.delete_on_success and os.path.isfile(self.path):
            os.remove(self.path)
