"""Multi-host start: join the processes of a cluster before any computation.

One machine (a TPU v3-8 VM, a box with several GPUs, or simulated CPU devices)
needs nothing: JAX sees all its devices. Several machines (a TPU pod slice, GPU
nodes) run the same script once per host; each process must call
``initialize()`` first, which calls ``keras.distribution.initialize`` and so
``jax.distributed.initialize(coordinator_address, num_processes, process_id)``.
After that ``keras.distribution.list_devices()`` lists every device of every host
and the same mesh and layouts apply.

Where the three numbers come from (the first set present wins):

| environment variables                                   | set by                       |
|---------------------------------------------------------|------------------------------|
| KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES, _PROCESS_ID | you / your launcher (Keras) |
| JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID | you / your launcher (JAX)   |
| TPU_WORKER_HOSTNAMES with several hosts (Cloud TPU VM)  | the TPU runtime: JAX detects the rest |
| SLURM_NTASKS > 1, OMPI_COMM_WORLD_SIZE > 1              | the cluster: JAX detects the rest |

``cluster_from_env`` only reads the variables (tested without starting anything).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Optional


@dataclasses.dataclass(frozen=True)
class Cluster:
    coordinator_address: Optional[str]     # "10.0.0.1:1234"; None: JAX detects it (TPU, SLURM, MPI)
    num_processes: Optional[int]
    process_id: Optional[int]
    source: str                            # which variables said so


def _int(env, name) -> Optional[int]:
    value = env.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def _explicit(env, address_var, count_var, id_var) -> Optional[Cluster]:
    present = [name for name in (address_var, count_var, id_var) if env.get(name) not in (None, "")]
    if not present:
        return None
    missing = [name for name in (address_var, count_var, id_var) if name not in present]
    if missing:
        raise ValueError(f"multi-host start: {', '.join(present)} set but {', '.join(missing)} missing; "
                         f"set all three on every host")
    addresses = env[address_var].split(",")
    count, index = _int(env, count_var), _int(env, id_var)
    if count < 1:
        raise ValueError(f"{count_var}={count}: need at least one process")
    if len(addresses) > 1 and len(addresses) != count:
        raise ValueError(f"{address_var} lists {len(addresses)} addresses but {count_var}={count}")
    if not 0 <= index < count:
        raise ValueError(f"{id_var}={index} must be between 0 and {count_var} - 1 = {count - 1}")
    return Cluster(addresses[0], count, index, f"{address_var.rsplit('_', 2)[0]}_*")


def cluster_from_env(env: Mapping[str, str] = None) -> Optional[Cluster]:
    """The cluster described by the environment, or None for a single process."""
    env = os.environ if env is None else env
    for names in (("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                   "KERAS_DISTRIBUTION_PROCESS_ID"),
                  ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")):
        cluster = _explicit(env, *names)
        if cluster is not None:
            return cluster
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    if len(hosts) > 1:
        return Cluster(None, None, None, "TPU_WORKER_HOSTNAMES")
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if (_int(env, name) or 1) > 1:
            return Cluster(None, None, None, name)
    return None


def initialize(env: Mapping[str, str] = None) -> Optional[Cluster]:
    """Join the cluster the environment describes (call it first); a no-op on one host.

    Returns the ``Cluster`` joined, or None.
    """
    cluster = cluster_from_env(env)
    if cluster is None:
        return None
    import keras
    keras.distribution.initialize(cluster.coordinator_address, cluster.num_processes, cluster.process_id)
    return cluster
