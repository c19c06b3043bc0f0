"""Distributed training and generation with ``keras.distribution`` (JAX backend).

    from gemma_kit import distributed
    dist = distributed.make_distribution(config, "2x4")   # mesh: 2 replicas x 4-way model parallel
    backbone = distributed.build_backbone(config, dist)   # or distributed.load("gemma_2b_en", dist)
    print(distributed.device_memory("gemma_7b_en", "1x8", dtype="bfloat16"))

- ``mesh.py``: the (data, model) device grid, and the errors when it does not fit;
- ``layouts.py``: which weight axis goes to the "model" axis (whole heads only);
- ``parallel.py``: ``DataParallel`` / ``ModelParallel``, building, loading and LoRA under them;
- ``memory.py``: bytes per device from the layouts, without allocating;
- ``picture.py``: which device holds which slice of a weight (matplotlib);
- ``launch.py``: multi-host start (``jax.distributed.initialize``) from environment variables.

We write no parallelism: JAX shards the arrays and inserts the communication.
"""

from .launch import Cluster, cluster_from_env, initialize
from .layouts import Rule, axes_for, layout_map, layout_rules
from .memory import DeviceMemory, device_memory, measured_bytes_per_device, memory_tables, variable_specs
from .mesh import AXIS_NAMES, BATCH, MODEL, check_batch_size, check_mesh_fits_devices, device_mesh, parse_mesh
from .picture import plot_shards, shard_slices
from .parallel import (add_lora, build_backbone, check_batch, expected_layout, load, make_distribution, mesh_shape,
                    read_layout)

__all__ = ["Cluster", "cluster_from_env", "initialize", "Rule", "axes_for", "layout_map", "layout_rules",
           "DeviceMemory", "device_memory", "measured_bytes_per_device", "memory_tables", "variable_specs",
           "AXIS_NAMES", "BATCH", "MODEL", "check_batch_size", "check_mesh_fits_devices", "device_mesh",
           "parse_mesh", "add_lora", "build_backbone", "check_batch", "expected_layout", "load",
           "make_distribution", "mesh_shape", "read_layout", "plot_shards", "shard_slices"]
