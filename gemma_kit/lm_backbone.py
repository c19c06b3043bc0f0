"""What every gemma_kit backbone shares: a config, a tied output layer, and ``call``.

Gemma (``backbone.GemmaBackbone``) and Griffin (``griffin.backbone.GriffinBackbone``) differ
in what happens between the embedding and the final norm, which each writes as
``hidden_states(inputs)``. Everything around it is the same and lives here:

    logits = logits_from_hidden(hidden_states(inputs))   # (batch, seq, vocab), float32

``logits_from_hidden`` is the tied embedding used in reverse (keras-hub's
``ReversibleEmbedding``, soft-capped when the config says so). Training that needs
logits at a few positions only (``gemma_kit.tuning.ResponseLM``) calls the two halves itself.
The config travels in ``get_config`` as a dict, so ``model.save("x.keras")`` round-trips.
"""

import keras


class LanguageModelBackbone(keras.Model):
    """Subclasses set ``config_class`` and define ``hidden_states(inputs, capture=None)``."""

    config_class = None      # GemmaConfig or GriffinConfig: how get_config's dict becomes a config again

    def __init__(self, config, dtype=None, **kwargs):
        super().__init__(dtype=dtype, name=kwargs.pop("name", config.name), **kwargs)
        self.config = config

    def logits_from_hidden(self, hidden):
        """Tied output layer: (..., width) -> float32 (..., vocab_size), soft-capped if configured."""
        return self.token_embedding(hidden, reverse=True)

    def call(self, inputs, capture=None):
        return self.logits_from_hidden(self.hidden_states(inputs, capture=capture))   # (batch, seq, vocab)

    def get_config(self):
        return {"config": self.config.to_dict(), "dtype": self.dtype_policy.name, "name": self.name}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(cls.config_class.from_dict(config.pop("config")), **config)
