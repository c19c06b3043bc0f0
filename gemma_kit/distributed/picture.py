"""A picture of which device holds which slice of a weight, read from the real arrays.

Each weight is drawn as a rectangle of its (rows, columns); each slice is coloured
by the position on the "model" axis of the devices that hold it, and labelled with
those devices. A replicated weight is one block held by every device; on a 2x4 mesh
each slice is held by 2 devices, one per replica (data-parallel copy).

JAX backend: ``jax.Array.addressable_shards`` gives each shard's device and its
``index`` (a tuple of slices into the full array).
"""

from __future__ import annotations

from typing import Dict, List, Tuple


def shard_slices(variable) -> Dict[Tuple[Tuple[int, int], ...], List[str]]:
    """{((row_start, row_stop), (col_start, col_stop), ...): [devices holding that slice]}."""
    shape = tuple(int(n) for n in variable.shape)
    slices: Dict[Tuple[Tuple[int, int], ...], List[str]] = {}
    for shard in variable.value.addressable_shards:
        key = tuple((s.start or 0, shape[i] if s.stop is None else s.stop) for i, s in enumerate(shard.index))
        slices.setdefault(key, []).append(str(shard.device).replace("TFRT_CPU_", "cpu:"))
    return slices


def plot_shards(variables, axes=None, max_label_devices=4):
    """One panel per variable (2-D; 1-D ones are drawn as a single row). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    variables = list(variables)
    if axes is None:
        _, axes = plt.subplots(1, len(variables), figsize=(3.6 * len(variables), 3.4), squeeze=False)
        axes = axes[0]
    colours = plt.get_cmap("tab10")
    for ax, variable in zip(axes, variables):
        shape = tuple(int(n) for n in variable.shape)
        rows, cols = shape[:2] if len(shape) > 1 else (1, shape[0])     # a 1-D weight: one row
        for n, (key, devices) in enumerate(sorted(shard_slices(variable).items())):
            (r0, r1), (c0, c1) = key[:2] if len(key) > 1 else ((0, 1), key[0])
            ax.add_patch(Rectangle((c0, r0), c1 - c0, r1 - r0, facecolor=colours(n % 10), edgecolor="black",
                                   alpha=0.75))
            names = [d.split(":")[-1] for d in devices]
            label = ",".join(names[:max_label_devices]) + ("..." if len(names) > max_label_devices else "")
            tall = (c1 - c0) / cols < (r1 - r0) / rows                  # a narrow column slice
            ax.text((c0 + c1) / 2, (r0 + r1) / 2, f"dev {label}", ha="center", va="center", fontsize=8,
                    rotation=90 if tall else 0)
        ax.set_xlim(0, cols)
        ax.set_ylim(rows, 0)
        ax.set_title("/".join(variable.path.split("/")[-3:]) + f"\n{shape}", fontsize=9)
        ax.set_xlabel("columns")
        ax.set_ylabel("rows")
    return axes[0].figure
