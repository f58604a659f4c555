"""Strong instance pairs drawn without reading a target label (the low-resource protocol).

A pair is one underlying instance rendered in both modalities: a source example and the target
example with the same `example_id` (synthetic_concepts renders every instance id in every
modality; `example_id` is unique within a modality there). Pairs are chosen through the SOURCE
side only: the source examples of the given source classes, in example_id order, matched to the
target example carrying the same id. The target arrays' `label` is never touched, so the target
side of every pair stays unlabelled (`tests/test_lowres.py` hands in labels that raise when read).
"""

from __future__ import annotations

import zlib

import numpy as np

# The config predicates are the protocol's own (meta_align_jax/lowres.py imports nothing of the
# package, so the data side may use it).
from meta_align_jax.lowres import pseudo_labels, unlabelled_strong_pairs  # noqa: F401

STREAM_PAIR_INSTANCES = 0x9A17


def target_index_by_id(target_example_id: np.ndarray) -> dict[int, int]:
  """example_id -> the first target example carrying it (reads ids, not labels)."""
  out = {}
  for i, e in enumerate(np.asarray(target_example_id).tolist()):
    out.setdefault(int(e), i)
  return out


def unlabelled_pairs(source_label: np.ndarray, source_example_id: np.ndarray,
                     source_class_names, class_names, target_example_id: np.ndarray, *,
                     seed: int, per_class: int = 0, what: str = 'alignment'):
  """Strong pairs of `class_names` (source classes), grouped by their source class.

  Args:
    source_label, source_example_id, source_class_names: the source modality.
    class_names: the source classes to pair (e.g. every meta-train class).
    target_example_id: the target modality's example ids; its labels are not an argument.
    seed: the run's seed; with `per_class` > 0, that many instances per class are drawn from a
      stream seeded by (seed, class name).
    per_class: instances per class (0: all that have a target rendering).

  Returns:
    (pair_source int32 [M], pair_target int32 [M], groups: one index array into the pairs per
    class, in `class_names` order).

  Raises:
    ValueError: a class with no source instance rendered in the target modality.
  """
  by_id = target_index_by_id(target_example_id)
  index = {n: i for i, n in enumerate(source_class_names)}
  source_label = np.asarray(source_label)
  source_example_id = np.asarray(source_example_id)
  pair_source, pair_target, groups = [], [], []
  for name in class_names:
    members = np.flatnonzero(source_label == index[name])
    members = members[np.argsort(source_example_id[members], kind='stable')]
    seen, src, tgt = set(), [], []
    for s in members.tolist():
      e = int(source_example_id[s])
      if e in by_id and e not in seen:
        seen.add(e)
        src.append(s)
        tgt.append(by_id[e])
    if not src:
      raise ValueError(f"config.lowres.pairs='strong' ({what}): source class {name!r} has no "
                       f'example whose example_id is rendered in the target modality; strong '
                       f"pairs need instance-paired data (use lowres.pairs='weak' or 'none').")
    if per_class and len(src) > per_class:
      rng = np.random.default_rng([int(seed), STREAM_PAIR_INSTANCES, zlib.crc32(name.encode())])
      keep = np.sort(rng.choice(len(src), size=per_class, replace=False))
      src, tgt = [src[k] for k in keep], [tgt[k] for k in keep]
    start = len(pair_source)
    pair_source.extend(src)
    pair_target.extend(tgt)
    groups.append(np.arange(start, len(pair_source)))
  return (np.asarray(pair_source, np.int32), np.asarray(pair_target, np.int32), groups)
