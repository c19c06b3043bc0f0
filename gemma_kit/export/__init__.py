"""Writers: a loaded model saved in other checkpoint formats.

- ``huggingface.py``: a transformers folder (``model.save_hf``);
- ``keras_hub.py``: a keras-hub preset folder (``model.save_preset``).
"""
