"""Device meshes: the devices laid out as a (data, model) grid.

A *mesh* arranges the accelerators (TPU cores, GPUs, or simulated CPU devices)
in a 2-D grid whose axes have names::

    mesh "2x4" (8 devices)          "batch" axis: 2 model replicas, each sees half of every batch
        model ->                    "model" axis: each replica is split over 4 devices
    batch  d0 d1 d2 d3
      |    d4 d5 d6 d7

Data parallelism (``8x1``) copies the whole model to every device and splits
the batch; model parallelism (``1x8``) splits every large weight over the
devices; ``2x4`` does both. The engine is JAX's sharding (GSPMD), reached through
``keras.distribution``: we only choose the shape and the axis names.

On a CPU you can simulate any number of devices, *before* JAX is imported::

    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
"""

from __future__ import annotations

import re
from typing import Sequence, Tuple, Union

BATCH = "batch"   # the data-parallel axis (keras.distribution calls it batch_dim_name)
MODEL = "model"   # the model-parallel axis: weights are split along it
AXIS_NAMES = (BATCH, MODEL)

MeshLike = Union[str, Sequence[int]]

SIMULATE_HINT = ("on a CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before the first "
                 "`import jax` / `import keras` to simulate N devices")


def parse_mesh(mesh: MeshLike) -> Tuple[int, int]:
    """``"2x4"``, ``(2, 4)`` or ``[2, 4]`` -> ``(data, model)``, both positive integers."""
    if isinstance(mesh, str):
        match = re.fullmatch(r"\s*(\d+)\s*[xX*,]\s*(\d+)\s*", mesh)
        if not match:
            raise ValueError(f"mesh={mesh!r}: write it as DATAxMODEL, e.g. '2x4' "
                             "(2 replicas of a model split over 4 devices)")
        shape = (int(match.group(1)), int(match.group(2)))
    else:
        shape = tuple(mesh)
        if len(shape) != 2 or not all(isinstance(n, int) for n in shape):
            raise ValueError(f"mesh={mesh!r}: give two integers (data, model), e.g. (2, 4)")
    if min(shape) <= 0:
        raise ValueError(f"mesh={mesh!r}: both axes must be at least 1, got data={shape[0]}, model={shape[1]}")
    return shape


def mesh_name(mesh: MeshLike) -> str:
    data, model = parse_mesh(mesh)
    return f"{data}x{model}"


def check_mesh_fits_devices(mesh: MeshLike, device_count: int) -> Tuple[int, int]:
    """``(data, model)``; a ValueError when the mesh needs more devices than exist, or leaves some idle."""
    data, model = parse_mesh(mesh)
    needed = data * model
    if needed > device_count:
        raise ValueError(f"mesh {data}x{model} needs {needed} devices but only {device_count} are available; "
                         f"choose data x model = {device_count}, or {SIMULATE_HINT}")
    if needed != device_count:
        options = ", ".join(f"{d}x{device_count // d}" for d in range(1, device_count + 1) if device_count % d == 0)
        raise ValueError(f"mesh {data}x{model} uses {needed} of the {device_count} devices: its shape must "
                         f"match the device count ({options})")
    return data, model


def require_jax() -> None:
    """``keras.distribution`` shards variables on the JAX backend only (Keras 3.15)."""
    import keras
    if keras.backend.backend() != "jax":
        raise RuntimeError(f"keras.distribution (meshes, DataParallel, ModelParallel) needs the JAX backend; "
                           f"this process runs {keras.backend.backend()!r}: set KERAS_BACKEND=jax before "
                           f"importing keras")


def device_mesh(mesh: MeshLike = None, devices=None):
    """A ``keras.distribution.DeviceMesh`` of shape (data, model) with axes ("batch", "model").

    ``mesh=None`` puts every device on the model axis (``1xN``). ``devices``: a list of
    device names (``keras.distribution.list_devices()``, the default).
    """
    import keras
    require_jax()
    devices = list(devices) if devices is not None else keras.distribution.list_devices()
    if mesh is None:
        mesh = (1, len(devices))
    shape = check_mesh_fits_devices(mesh, len(devices))
    return keras.distribution.DeviceMesh(shape=shape, axis_names=AXIS_NAMES, devices=devices)


def check_batch_size(mesh: MeshLike, batch_size: int) -> None:
    """Each replica gets ``batch_size / data`` examples: the data axis must divide the batch."""
    data, _ = parse_mesh(mesh)
    if batch_size % data:
        raise ValueError(f"batch_size={batch_size} cannot be split over the {data} data-parallel replicas of "
                         f"mesh {mesh_name(mesh)}: use a multiple of {data}")
