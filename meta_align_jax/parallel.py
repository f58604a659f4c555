"""How a step is spread over devices and how the task batch executes, resolved from the config.

`execution.parallel`: `pmap` puts a leading `[num_local_devices]` axis on the batch and the
state; `jit` runs on one device with no device axis; `auto` picks pmap when there is more than
one local device. `execution.task_batching` / `execution.inner_loop`: `auto` resolves per backend
from measurements (DESIGN.md, Performance notes; bench/README.md): on XLA:CPU unrolled code
beats loops and vmapped convolutions by ~10x. On GPU (H100/H200) `vmap` with a scanned inner loop,
with per-task convolutions as batched patch GEMMs (`execution.conv`, models/conv.py), is the
fastest for every benchmarked config: 1.3x `lax.map` over tasks for a Conv-4, and `lax.map` is
5x slower for the reference model, whose LSTM then runs its time loop once per task.
"""

from __future__ import annotations

import jax

AXIS = 'devices'


def resolve_parallel(config) -> str:
  mode = config.execution.parallel
  if mode not in ('auto', 'pmap', 'jit'):
    raise ValueError(f"config.execution.parallel={mode!r}: use 'auto', 'pmap' or 'jit'.")
  if mode == 'auto':
    return 'pmap' if jax.local_device_count() > 1 else 'jit'
  return mode


def num_batch_devices(config) -> int | None:
  """Size of the batch's leading device axis, or None when the batch has no device axis."""
  return jax.local_device_count() if resolve_parallel(config) == 'pmap' else None


def resolve_execution(config, backend: str | None = None) -> tuple[str, str]:
  """(task_batching, inner_loop) with `auto` replaced by the backend's measured best."""
  backend = backend or jax.default_backend()
  tb, il = config.execution.task_batching, config.execution.inner_loop
  if tb not in ('auto', 'vmap', 'map', 'unroll'):
    raise ValueError(f"config.execution.task_batching={tb!r}: use auto, vmap, map or unroll.")
  if il not in ('auto', 'scan', 'unroll'):
    raise ValueError(f"config.execution.inner_loop={il!r}: use auto, scan or unroll.")
  if tb == 'auto':
    tb = 'unroll' if backend == 'cpu' else 'vmap'
  if il == 'auto':
    il = 'unroll' if backend == 'cpu' else 'scan'
  return tb, il
