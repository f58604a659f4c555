"""Registry of the TFDS builders the data pipeline can load, keyed by `config.data.*_dataset`.

A dataset is one builder class plus its registration:

  @registry.register('my_dataset')
  class MyDataset(tfds.core.GeneratorBasedBuilder): ...

Each builder module in `meta_align_jax.data.builders` registers its class at import time;
`meta_align_jax.data.loading` imports that package before looking a name up. (`Registry` has the
shape of the core's generic registry; the data package keeps its own so that it imports nothing
outside `meta_align_jax.data` and `meta_align_jax.io`.)
"""

from __future__ import annotations

from typing import Any, Callable


class Registry:
  """Names -> objects, filled by a decorator; a lookup of an unknown name lists the known ones.

  Args:
    kind: what is registered, for messages ('dataset').
    field: the config field that names an entry, for messages ('config.data.*_dataset').
  """

  def __init__(self, kind: str, field: str):
    self.kind, self.field = kind, field
    self._entries: dict[str, Any] = {}

  def register(self, name: str, obj: Any = None) -> Callable[[Any], Any] | Any:
    """`@register(name)` decorates what to register; `register(name, obj)` adds it directly."""
    def add(obj):
      self._entries[name] = obj
      return obj
    return add if obj is None else add(obj)

  def get(self, name: str) -> Any:
    if name not in self._entries:
      raise ValueError(f'{self.field}={name!r} is not a known {self.kind}; known: {self.names()}.')
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries


DATASETS = Registry('dataset', 'config.data.*_dataset')
register = DATASETS.register
get = DATASETS.get
names = DATASETS.names
