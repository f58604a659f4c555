"""Rotations as new classes (`config.augment.rotation_classes`), the usual Omniglot protocol.

Every class `name` of an image dataset becomes four classes, `name`, `name@rot90`, `name@rot180`
and `name@rot270`, whose examples are the originals rotated counter-clockwise by that angle
(`np.rot90` over the H, W axes). The class-disjoint split (`splits.make_splits`) cuts the
original classes and then gives each rotation its original's split, so a character and its
rotations are never on two sides of the meta-train / meta-test boundary; rotations appear in every
split (meta-test episodes are drawn from the rotated test characters too).

Example ids of a rotation are `4 * id + k` (k = 0 for the original, 1..3 for 90..270 degrees), so
they stay unique; the light per-episode augmentation is in the core (`meta_align_jax/augment.py`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

ANGLES = (0, 90, 180, 270)
SEPARATOR = '@rot'


def rotated_name(name: str, angle: int) -> str:
  return name if angle == 0 else f'{name}{SEPARATOR}{angle}'


def base_name(name: str) -> str:
  """The original class of a (possibly rotated) class name."""
  base, sep, angle = name.rpartition(SEPARATOR)
  return base if sep and angle.isdigit() else name


def rotation_classes(data):
  """`data` (a `loading.ModalityData`) with every class also rotated by 90, 180 and 270
  degrees, each a class of its own.

  Class `c` of `data` becomes class `4 * c + k` (k-th angle of `ANGLES`); examples are ordered
  original first, then their rotations. Raises ValueError on inputs that are not square images.
  """
  x = data.x
  if x.ndim != 4 or x.shape[1] != x.shape[2]:
    raise ValueError(f'config.augment.rotation_classes=True rotates square images [n, H, H, C]; '
                     f'the data has shape {x.shape}.')
  n = x.shape[0]
  rotated = np.stack([np.rot90(x, k, axes=(1, 2)) for k in range(4)], axis=1)   # [n, 4, ...]
  label = (data.label[:, None] * 4 + np.arange(4)[None, :]).reshape(-1).astype(np.int32)
  example_id = (data.example_id[:, None] * 4 + np.arange(4)[None, :]).reshape(-1).astype(np.int64)
  names = [rotated_name(c, a) for c in data.class_names for a in ANGLES]
  out = dataclasses.replace(data, x=np.ascontiguousarray(rotated.reshape((4 * n,) + x.shape[1:])),
                            label=label, class_names=names, example_id=example_id)
  for v in (out.x, out.label, out.example_id):
    v.setflags(write=False)
  return out


def group_by_base(names: list[str]) -> dict[str, list[str]]:
  """Original class name -> its (rotated) class names among `names`."""
  groups: dict[str, list[str]] = {}
  for n in sorted(names):
    groups.setdefault(base_name(n), []).append(n)
  return groups
