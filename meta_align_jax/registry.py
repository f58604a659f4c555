"""One small registry for every extension point: encoders, losses, learners, datasets.

A registry maps config names to objects; `register` is a decorator (or a plain call), and a lookup
of an unknown name raises a ValueError that names the config field and lists the known names.
Validation asks the registries for the valid names, so a new learner or loss is one function and
its decorator. Imports nothing (the data package uses it too).
"""

from __future__ import annotations

from typing import Any, Iterator


class Registry:
  """Names -> objects for the config field `field` (e.g. 'config.meta.learner')."""

  def __init__(self, kind: str, field: str):
    self.kind, self.field = kind, field
    self._items: dict[str, Any] = {}

  def register(self, name: str, obj: Any = None, *, overwrite: bool = False) -> Any:
    """`@registry.register('name')` on a function or class, or `register('name', obj)`."""
    def add(o):
      if name in self._items and not overwrite:
        raise ValueError(f'{self.kind} {name!r} is already registered; pick another name or '
                         'pass overwrite=True.')
      self._items[name] = o
      return o
    return add if obj is None else add(obj)

  def unregister(self, name: str) -> None:
    self._items.pop(name, None)

  def get(self, name: str, field: str | None = None) -> Any:
    if name not in self._items:
      raise ValueError(f'{field or self.field}={name!r} is not a known {self.kind}; known: '
                       f'{self.names()}.')
    return self._items[name]

  def check(self, name: str, field: str | None = None) -> None:
    self.get(name, field)

  def names(self) -> list[str]:
    return sorted(self._items)

  def __contains__(self, name) -> bool:
    return name in self._items

  def __iter__(self) -> Iterator[str]:
    return iter(self._items)

  def __getitem__(self, name: str) -> Any:
    return self.get(name)

  def __delitem__(self, name: str) -> None:
    del self._items[name]

  def __setitem__(self, name: str, obj: Any) -> None:
    self.register(name, obj, overwrite=True)

  def __len__(self) -> int:
    return len(self._items)
