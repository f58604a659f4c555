"""Training inputs gathered on the accelerator: the host sends example indices, not examples.

With `config.data.gather = 'device'` the input pipeline draws each step's tasks as example
*indices* and labels only (a few KB per step), and the examples are gathered on the device from
copies of the source and target arrays that stay in device memory for the whole run. The host
then never copies inputs: on a GPU the host pipeline's episodes/s no longer depends on the size
of an example (84x84 images, 64 x 768 token features), and no image crosses PCIe twice.

The index batch has the layout of the training batch (`meta_align_jax.data.episodes`) with every
input replaced by its index into the modality's examples:

  source.{support,query}.idx    -> source.{support,query}.x   = source_x[idx]
  align.source_idx              -> align.source_x              = source_x[source_idx]
  align.target_idx              -> align.target_x              = target_x[target_idx]
  target.{support,query}.idx    -> target.{support,query}.x   = target_x[idx]

Labels pass through unchanged, so a gathered batch is the host pipeline's batch, bit for bit
(`tests/test_device_gather.py`). Under pmap the arrays are replicated on every local device and
the gather runs per device on that device's shard of the index batch.

`config.data.gather` chooses it (`feeds.gather_mode`); `feeds.pipeline` puts the index pipeline
and this gather together.

This module imports JAX and the core's `replicate` only: the data package builds the index
pipeline, this one the gather.
"""

from __future__ import annotations

from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from meta_align_jax.parallel import replicate


def gather_batch(source_x, target_x, index_batch: dict) -> dict:
  """The training batch of `index_batch` (see the module docstring), as a pure function."""
  def take(pool, idx):
    return jnp.take(pool, idx, axis=0, mode='clip')

  def few_shot(task, pool):
    out = {}
    for part, fields in task.items():
      fields = dict(fields)
      fields['x'] = take(pool, fields.pop('idx'))
      out[part] = fields
    return out

  out = {}
  if 'source' in index_batch:
    out['source'] = few_shot(index_batch['source'], source_x)
  if 'align' in index_batch:
    a = index_batch['align']
    out['align'] = {'source_x': take(source_x, a['source_idx']),
                    'target_x': take(target_x, a['target_idx']),
                    **{k: v for k, v in a.items() if k not in ('source_idx', 'target_idx')}}
  if 'target' in index_batch:
    out['target'] = few_shot(index_batch['target'], target_x)
  return out


def input_nbytes(source_x: np.ndarray, target_x: np.ndarray) -> int:
  """Bytes of the two input arrays, one array counted once (single modality: both are one)."""
  return int(target_x.nbytes + (0 if source_x is target_x else source_x.nbytes))


class DeviceGather:
  """Holds the source and target arrays on the device(s) and gathers index batches there.

  Args:
    source_x, target_x: every example of each modality, `[n, *input_shape]` (the arrays the
      indices point into).
    pmap: whether the batches carry a leading local-device axis (`execution.parallel` = pmap);
      the arrays are then replicated on every local device.
  """

  def __init__(self, source_x: np.ndarray, target_x: np.ndarray, *, pmap: bool):
    self.pmap = bool(pmap)
    # One modality (config.task.modalities=('target',)): both names point at one array, held once.
    same = source_x is target_x
    self.nbytes = input_nbytes(source_x, target_x)
    put = replicate if self.pmap else jax.device_put
    target = put(target_x)
    self._arrays = (target if same else put(source_x), target)
    self._fn = jax.pmap(gather_batch) if self.pmap else jax.jit(gather_batch)

  def __call__(self, index_batch: dict) -> dict:
    return self._fn(*self._arrays, index_batch)

  def iterate(self, index_batches: Iterator[dict]) -> Iterator[dict]:
    """Gathers every batch of `index_batches`; the gather is dispatched asynchronously."""
    for batch in index_batches:
      yield self(batch)
