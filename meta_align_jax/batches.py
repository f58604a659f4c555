"""Random batches in the step's exact layout, for research code, benchmarks and tests.

`random_batch(config, seed)` gives what the data pipeline would give, filled with random inputs
(uniform images, random spectrograms, random token ids with padding) and valid episode-local
labels, so `make_train_step` can be driven without TensorFlow or any dataset.
"""

from __future__ import annotations

import numpy as np

from meta_align_jax import parallel
from meta_align_jax.models.registry import input_dtype


def _inputs(rng, lead, side_config):
  shape = lead + tuple(side_config.input_shape)
  if np.dtype(input_dtype(side_config)) == np.int32:   # token ids, the tail of each sequence padded
    vocab = 64
    ids = rng.integers(2, vocab, size=shape).astype(np.int32)
    length = shape[-1]
    keep = rng.integers(max(1, length // 2), length + 1, size=shape[:-1])
    return np.where(np.arange(length) < keep[..., None], ids, 0).astype(np.int32)
  return rng.random(shape, dtype=np.float32)


def _labels(lead, ways, per_class):
  return np.broadcast_to(np.repeat(np.arange(ways, dtype=np.int32), per_class),
                         lead + (ways * per_class,)).copy()


def random_task(rng, lead, side_config, ways, shots, queries, global_classes=0):
  out = {}
  for split, n in (('support', shots), ('query', queries)):
    y = _labels(lead, ways, n)
    out[split] = {'x': _inputs(rng, lead + (ways * n,), side_config), 'y': y}
    if global_classes:
      out[split]['label'] = (y + rng.integers(0, max(1, global_classes - ways + 1),
                                               size=lead + (1,))).astype(np.int32)
  return out


def random_batch(config, seed: int = 0, *, num_devices: int | None | str = 'auto') -> dict:
  """A training batch for `config` with leading axes `[devices, tasks_per_device]`.

  `num_devices='auto'` follows `config.execution.parallel` (no device axis under jit).
  """
  rng = np.random.default_rng(seed)
  if num_devices == 'auto':
    num_devices = parallel.num_batch_devices(config)
  t = config.task
  lead = ((num_devices,) if num_devices else ()) + (t.tasks_per_device,)
  batch = {}
  for side in t.meta_on:
    batch[side] = random_task(rng, lead, config[side], t.ways, t.shots, t.queries,
                              config.model.num_global_classes)
  if config.align.enabled:
    a = config.align
    batch['align'] = {'source_x': _inputs(rng, lead + (a.pairs,), config.source),
                      'target_x': _inputs(rng, lead + (a.pairs,), config.target),
                      'y': _labels(lead, a.ways, a.pairs // a.ways)}
  return batch


def random_episodes(config, num_episodes: int, seed: int = 0, side: str = 'target') -> dict:
  """Evaluation episodes `[E, ...]` of `side`'s modality in `config.eval`'s shape."""
  e = config.eval
  return random_task(np.random.default_rng(seed), (num_episodes,), config[side], e.ways, e.shots,
                     e.queries)
