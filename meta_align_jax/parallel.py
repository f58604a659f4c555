"""How a step is spread over devices: the device axis, `replicate` / `unreplicate`.

`config.execution.parallel`: `pmap` puts a leading `[num_local_devices]` axis on the batch and the
state; `jit` runs on one device with no device axis; `auto` picks pmap when there is more than
one local device. The other execution choices (task batching, inner loop, convolutions) are
resolved with this one into one `Execution` (fast/execution.py).
"""

from __future__ import annotations

import jax
import numpy as np

AXIS = 'devices'
MODES = ('auto', 'pmap', 'jit')


def resolve_parallel(config) -> str:
  mode = config.execution.parallel
  if mode not in MODES:
    raise ValueError(f"config.execution.parallel={mode!r}: use 'auto', 'pmap' or 'jit'.")
  if mode == 'auto':
    return 'pmap' if jax.local_device_count() > 1 else 'jit'
  return mode


def num_batch_devices(config) -> int | None:
  """Size of the batch's leading device axis, or None when the batch has no device axis."""
  return jax.local_device_count() if resolve_parallel(config) == 'pmap' else None


def replicate(tree):
  """Puts a copy of `tree` on every local device (the state layout a pmapped step takes).

  The result has a leading axis of size `jax.local_device_count()`, sharded over the devices.
  """
  devices = jax.local_devices()
  sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.array(devices), (AXIS,)),
                                        jax.sharding.PartitionSpec(AXIS))
  def put(x):
    x = np.asarray(jax.device_get(x))
    return jax.device_put(np.broadcast_to(x[None], (len(devices),) + x.shape), sharding)
  return jax.tree.map(put, tree)


def unreplicate(tree):
  return jax.tree.map(lambda x: x[0], tree)
