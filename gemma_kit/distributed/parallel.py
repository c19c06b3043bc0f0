"""From a mesh to a running model: ``DataParallel`` or ``ModelParallel``, and where the weights went.

    dist = make_distribution(config, "2x4")        # 2 replicas x 4-way model parallel
    backbone = build_backbone(config, dist)        # every variable created already sharded
    add_lora(backbone, dist, rank=4)               # gemma_kit.tuning's LoRA, created in the scope
    with dist.scope():                             # the optimizer's slots take their weights' layouts
        backbone.compile(...); backbone.fit(...)   # plain Keras: batches are split over "batch"
    Generator(backbone).tokens(...)                # generation: jit follows the weights' shardings

A model axis of 1 (``8x1``) is plain data parallelism: ``keras.distribution.DataParallel``
copies every weight to every device. Otherwise ``ModelParallel`` places each
variable as the layout map says (``layouts.py``) and splits each batch over the
"batch" axis. Variables take their layout when they are *created*, so a model,
its LoRA adapters and its optimizer must be built inside ``distribution.scope()``
(Keras gives each optimizer slot the layout of its weight).

``read_layout`` reads back where a variable really lives (``jax.Array.sharding``).
"""

from __future__ import annotations

import keras

from .layouts import layout_map
from .mesh import BATCH, check_batch_size, device_mesh, parse_mesh


def make_distribution(config, mesh=None, devices=None):
    """``DataParallel`` for a ``Nx1`` mesh, else ``ModelParallel`` with ``config``'s layout map.

    ``mesh``: ``"2x4"``, ``(2, 4)``, or None for ``1xN`` (every device on the model axis).
    """
    mesh = device_mesh(mesh, devices)
    data, model = parse_mesh(tuple(int(n) for n in mesh.shape))
    if model == 1:
        return keras.distribution.DataParallel(devices=mesh.devices.flatten().tolist())
    return keras.distribution.ModelParallel(layout_map=layout_map(config, mesh), batch_dim_name=BATCH)


def mesh_shape(distribution):
    """(data, model) of a distribution made by ``make_distribution``."""
    shape = tuple(int(n) for n in distribution.device_mesh.shape)
    return shape if len(shape) == 2 else (shape[0], 1)     # DataParallel's mesh is 1-D


def check_batch(distribution, batch_size: int) -> None:
    """A clear error when the data axis does not divide ``batch_size``."""
    check_batch_size(mesh_shape(distribution), batch_size)


def build_backbone(config, distribution, dtype=None, **kwargs):
    """The backbone of ``config``'s family, its variables created sharded."""
    from ..models import backbone_class
    with distribution.scope():
        return backbone_class(config)(config, dtype=dtype, **kwargs)


def load(source, distribution, dtype=None, **options):
    """``gemma_kit.load(source)`` with every weight placed as ``distribution`` says."""
    import gemma_kit
    with distribution.scope():
        return gemma_kit.load(source, dtype=dtype, **options)


def add_lora(backbone, distribution, rank: int = 4, targets=("query", "value"), alpha=None, verbose=False):
    """``gemma_kit.tuning.enable_lora`` inside the distribution's scope, so the adapters get their layouts.

    Returns its parameter counts. (Adapters are small: the layout maps leave them replicated.)
    """
    from ..tuning import enable_lora
    with distribution.scope():
        return enable_lora(backbone, rank=rank, targets=targets, alpha=alpha, verbose=verbose)


def read_layout(variable):
    """The mesh axes a variable is really split over, read from its array: e.g. ``(None, "model")``.

    JAX backend only (a ``jax.Array`` knows its ``sharding``). An array on one device
    reads as replicated.
    """
    sharding = variable.value.sharding
    spec = tuple(getattr(sharding, "spec", ()))
    spec = spec + (None,) * (len(variable.shape) - len(spec))
    return tuple(axis[0] if isinstance(axis, tuple) and len(axis) == 1 else axis for axis in spec)


def expected_layout(distribution, variable):
    """The axes the distribution asked for (``None`` everywhere for replicated variables)."""
    layout = distribution.get_variable_layout(variable)
    axes = tuple(layout.axes) if layout is not None else ()
    return axes + (None,) * (len(variable.shape) - len(axes))
