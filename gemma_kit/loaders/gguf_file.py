"""A small, fast reader for the GGUF file format (llama.cpp / Ollama).

A GGUF file is laid out as::

    "GGUF" | version (u32) | tensor count (u64) | metadata count (u64)
    metadata:    key (string) | value type (u32) | value        (repeated)
    tensor info: name (string) | n_dims (u32) | dims (u64 x n) | ggml type (u32) | offset (u64)
    padding to `general.alignment` (32 bytes by default)
    tensor data: each tensor at its offset, quantized in blocks

Strings are a u64 length followed by UTF-8 bytes; all numbers are little-endian.
Dimensions are listed innermost first (``dims[0]`` is the row length), so the
NumPy shape is ``dims`` reversed: a ``[640, 262144]`` GGUF tensor is a
``(262144, 640)`` matrix, ``[out, in]`` like a torch ``Linear`` weight.

Why not ``gguf.GGUFReader``? It wraps every array element in a NumPy view and
takes ~10 s on the 262,144-entry Gemma vocabulary; reading the header with
``struct`` takes well under a second. The ``gguf`` package still does the
numeric work: its quantization table and ``gguf.quants.dequantize``.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from typing import Any, Dict, Tuple

import numpy as np

# GGUF metadata value types -> struct format (for scalars).
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32,
          6: np.float32, 7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """A file that is not a readable GGUF file (the message names the file and the problem)."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: Tuple[int, ...]     # NumPy order: (rows, row_length)
    ggml_type: int             # a gguf.GGMLQuantizationType (an IntEnum)
    offset: int                # absolute byte offset in the file
    nbytes: int


class _Cursor:
    """Reads little-endian values from a memory-mapped byte buffer."""

    def __init__(self, buffer, path):
        self.buffer, self.pos, self.path = buffer, 0, path

    def take(self, n):
        if self.pos + n > len(self.buffer):
            raise GGUFError(f"{self.path}: file is truncated (needed {n} bytes at offset {self.pos}, "
                            f"file has {len(self.buffer)})")
        out = self.buffer[self.pos:self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        return bytes(self.take(self.scalar("<Q"))).decode("utf-8", errors="replace")

    def value(self, vtype):
        if vtype == _STRING:
            return self.string()
        if vtype in _SCALAR:
            return self.scalar(_SCALAR[vtype])
        if vtype == _ARRAY:
            item_type, count = self.scalar("<I"), self.scalar("<Q")
            if item_type in _NUMPY:  # numeric arrays: one NumPy view, no Python loop
                dtype = np.dtype(_NUMPY[item_type])
                return np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype).copy()
            return [self.value(item_type) for _ in range(count)]
        raise GGUFError(f"{self.path}: unknown metadata value type {vtype} at offset {self.pos}")


class GGUFFile:
    """Metadata and tensor index of a GGUF file; tensor data is read lazily."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"GGUF file not found: {self.path}")
        self._data = np.memmap(self.path, dtype=np.uint8, mode="r")
        buffer = memoryview(self._data)
        cur = _Cursor(buffer, self.path)
        if len(buffer) < 24 or bytes(buffer[:4]) != b"GGUF":
            raise GGUFError(f"{self.path}: not a GGUF file (the first bytes are {bytes(buffer[:4])!r}, "
                            "expected b'GGUF')")
        cur.pos = 4
        self.version = cur.scalar("<I")
        if self.version not in (2, 3):
            raise GGUFError(f"{self.path}: unsupported GGUF version {self.version} (this reader knows 2 and 3)")
        n_tensors, n_kv = cur.scalar("<Q"), cur.scalar("<Q")

        self.metadata: Dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string()
            self.metadata[key] = cur.value(cur.scalar("<I"))

        infos = []
        for _ in range(n_tensors):
            name = cur.string()
            dims = [cur.scalar("<Q") for _ in range(cur.scalar("<I"))]
            ggml_type, offset = cur.scalar("<I"), cur.scalar("<Q")
            infos.append((name, tuple(reversed(dims)), ggml_type, offset))

        import gguf   # its quantization table; imported on first read, so `import gemma_kit` stays quick

        alignment = int(self.metadata.get("general.alignment", 32))
        data_start = -(-cur.pos // alignment) * alignment   # round up to the alignment
        self.tensors: Dict[str, TensorInfo] = {}
        for name, shape, ggml_type, offset in infos:
            try:
                qtype = gguf.GGMLQuantizationType(ggml_type)
            except ValueError:
                raise GGUFError(f"{self.path}: tensor {name!r} has unknown ggml type {ggml_type}") from None
            block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
            n_elements = int(np.prod(shape))
            nbytes = n_elements // block_size * type_size
            start = data_start + offset
            if start + nbytes > len(buffer):
                raise GGUFError(f"{self.path}: file is truncated: tensor {name!r} needs bytes "
                                f"{start}..{start + nbytes} but the file has {len(buffer)}")
            self.tensors[name] = TensorInfo(name, shape, qtype, start, nbytes)

    def q8_0_blocks(self, name: str, rows: slice | None = None):
        """A Q8_0 tensor's own int8 values (rows, in) and block scales (rows, in / 32), not dequantized."""
        return self.dequantize(name, rows, as_blocks=True)

    def dequantize(self, name: str, rows: slice | None = None, as_blocks: bool = False) -> np.ndarray:
        """The tensor ``name`` as a float32 NumPy array of its NumPy shape.

        ``rows``: only those rows of a matrix (its first axis), e.g. a chunk of a large embedding
        table read into int8 piece by piece (``nn/int8.py``). GGUF quantizes each row on its own,
        so a row is a whole number of blocks and can be read alone.
        """
        if name not in self.tensors:
            raise KeyError(f"{self.path}: tensor {name!r} is missing")
        import gguf

        info = self.tensors[name]
        raw = np.asarray(self._data[info.offset:info.offset + info.nbytes])
        shape = info.shape
        if rows is not None:
            raw = raw.reshape(shape[0], -1)[rows].reshape(-1)                 # (chunk rows * bytes per row,)
            shape = (len(range(*rows.indices(shape[0]))), *shape[1:])
        if info.ggml_type == gguf.GGMLQuantizationType.F32:
            return raw.view(np.float32).reshape(shape)
        if info.ggml_type == gguf.GGMLQuantizationType.Q8_0 and as_blocks:
            return _q8_0_parts(raw, shape)
        if info.ggml_type == gguf.GGMLQuantizationType.Q8_0:
            return _dequantize_q8_0(raw, shape)
        per_row = raw.reshape(shape[:-1] + (-1,))                              # (rows, bytes per row)
        return gguf.quants.dequantize(per_row, info.ggml_type).astype(np.float32, copy=False)


def _q8_0_parts(raw: np.ndarray, shape):
    """Q8_0 bytes -> (int8 values (rows, in), float32 scales (rows, in / 32)): 34 bytes a block."""
    blocks = raw.reshape(-1, 34)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)       # (n_blocks, 1)
    values = blocks[:, 2:].view(np.int8)                                   # (n_blocks, 32)
    return values.reshape(shape), scale.reshape(*shape[:-1], -1)


def _dequantize_q8_0(raw: np.ndarray, shape) -> np.ndarray:
    """Q8_0: blocks of 32 int8 values sharing one float16 scale (34 bytes a block).

    The same arithmetic as ``gguf.quants.dequantize`` (``scale * q``), written
    out because the 167M-value embedding table is the bulk of the load time and
    this form is several times faster.
    """
    blocks = raw.reshape(-1, 34)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)   # (n_blocks, 1)
    values = blocks[:, 2:].view(np.int8).astype(np.float32)               # (n_blocks, 32)
    values *= scale
    return values.reshape(shape)


def assign_int8(variable, gguf_file, name: str, weight_path: str, chunk_rows: int = 16384) -> None:
    """Read tensor ``name`` into an int8 weight (``nn/int8.Int8Weight``), ``chunk_rows`` rows at a time.

    GGUF keeps matrices ``[out, in]``, the int8 layout, so nothing is transposed. A Q8_0 tensor
    (blocks of 32 int8 values and a float16 scale, along each row) is taken as it is; any other
    type is dequantized a chunk at a time and requantized into blocks of 32.
    """
    import gguf

    info = gguf_file.tensors[name]
    if tuple(info.shape) != variable.stored_shape:
        raise GGUFError(f"{gguf_file.path}: tensor {name!r} has shape {tuple(info.shape)}, but the config expects "
                        f"{variable.stored_shape} ([out, in]) for {weight_path}")
    keep_q8_0 = info.ggml_type == gguf.GGMLQuantizationType.Q8_0 and info.shape[-1] % 32 == 0
    read = gguf_file.q8_0_blocks if keep_q8_0 else gguf_file.dequantize
    variable.assign_stored((first, read(name, rows=slice(first, first + chunk_rows)))
                           for first in range(0, info.shape[0], chunk_rows))


def read_gguf(path: str | os.PathLike) -> GGUFFile:
    """Open a GGUF file: parse its metadata and tensor index (fast; data stays on disk)."""
    return GGUFFile(path)
