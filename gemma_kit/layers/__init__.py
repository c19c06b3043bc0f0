"""The building blocks of a Gemma decoder, one concept a file."""

from .attention import GemmaAttention, ring_slot_times
from .decoder_block import DecoderBlock
from .mlp import GeGLU
from .rms_norm import RMSNorm
from .rotary import apply_rope

__all__ = ["GemmaAttention", "ring_slot_times", "DecoderBlock", "GeGLU", "RMSNorm", "apply_rope"]
