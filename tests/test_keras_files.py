"""``.keras`` files written before the one-house layout (``nn/``, ``models/<family>/``) still load.

``tests/data/main_before_layout_*.keras`` were saved by main before the move (tiny random Gemma 3-shaped
and Griffin models, ``model.save``), with their logits on fixed token ids: the registered names and the
layer attribute names the files refer to must not change.
"""

import os

import keras
import numpy as np
import pytest

import gemma_kit

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.mark.parametrize("family, cls", [("gemma", gemma_kit.GemmaBackbone), ("griffin", gemma_kit.GriffinBackbone)])
def test_a_keras_file_from_before_the_move_loads(family, cls, tmp_path):
    saved = np.load(os.path.join(DATA, "main_before_layout_logits.npz"))
    model = keras.saving.load_model(os.path.join(DATA, f"main_before_layout_{family}.keras"))
    assert isinstance(model, cls)
    logits = np.asarray(keras.ops.convert_to_numpy(model(saved["token_ids"])))
    np.testing.assert_allclose(logits, saved[f"{family}_logits"], atol=1e-4, rtol=1e-4)
    model.save(tmp_path / "again.keras")                    # and it saves again with the new code
    again = keras.saving.load_model(tmp_path / "again.keras")
    np.testing.assert_allclose(np.asarray(keras.ops.convert_to_numpy(again(saved["token_ids"]))), logits, atol=1e-6)
