"""The model families, one folder each, with the same file names side by side.

    models/gemma/     Gemma 1, 2, 3, CodeGemma       config, presets, attention, block, backbone
    models/gemma4/    Gemma 4 (text)                 the same names (attention: Gemma's, with options),
                                                     plus moe, per_layer_embeddings
    models/griffin/   RecurrentGemma (Griffin)       the same five, plus recurrent_block, rg_lru, conv_1d

What every family shares (norms, RoPE, GeGLU, masks, the KV cache, the backbone
skeleton) is in ``gemma_kit/nn/``. ``backbone_class(config)`` is the one place
that maps a config to its model, so no caller has to ask which family it holds.
"""

from .gemma import GemmaBackbone, GemmaConfig
from .gemma4 import Gemma4Backbone, Gemma4Config
from .griffin import GriffinBackbone, GriffinConfig

BACKBONES = {GemmaConfig: GemmaBackbone, Gemma4Config: Gemma4Backbone, GriffinConfig: GriffinBackbone}


def for_family(table, config, what: str):
    """``table[type(config)]``: what a per-family table (keyed by config class) holds for ``config``'s family;
    a TypeError naming ``what`` and the families the table knows otherwise."""
    if type(config) not in table:
        raise TypeError(f"no {what} for a {type(config).__name__}; "
                        f"expected one of {', '.join(c.__name__ for c in table)}")
    return table[type(config)]


def backbone_class(config):
    """The backbone class that builds a model from ``config`` (``GemmaConfig``, ``Gemma4Config``, ``GriffinConfig``)."""
    return for_family(BACKBONES, config, "model family")


__all__ = ["BACKBONES", "backbone_class", "for_family", "GemmaBackbone", "GemmaConfig", "Gemma4Backbone",
           "Gemma4Config", "GriffinBackbone", "GriffinConfig"]
