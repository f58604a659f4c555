"""Registry of the TFDS builders the data pipeline can load, keyed by `config.data.*_dataset`.

A dataset is one builder class plus its registration:

  @registry.register('my_dataset')
  class MyDataset(tfds.core.GeneratorBasedBuilder): ...

Each builder module in `meta_align_jax.data.builders` registers its class at import time;
`meta_align_jax.data.loading` imports that package before looking a name up. `Registry` is the
core's generic one (`meta_align_jax/registry.py`, which imports nothing).
"""

from __future__ import annotations

from typing import Any

from meta_align_jax.registry import Registry  # noqa: F401  (re-exported)

DATASETS = Registry('dataset', 'config.data.*_dataset')
get = DATASETS.get
names = DATASETS.names


def register(name: str, obj: Any = None):
  """`@register(name)` on a builder class, or `register(name, cls)`; registering a name again
  replaces it (a builder module imported twice)."""
  return DATASETS.register(name, obj, overwrite=True)
