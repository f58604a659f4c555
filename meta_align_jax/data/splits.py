"""Class-disjoint meta-train / meta-val / meta-test splits, and the low-resource target subset.

The low-resource target side can also be restricted to a few labelled meta-train classes
(`config.data.target_train_classes`, `target_train_classes`); the source keeps all of them.

Classes are joined by name across the source and target datasets (a class is usable when both
have examples of it), sorted, shuffled with `config.seed` and cut by `config.data.split_fractions`.
The split is a pure function of the seed, the fractions and the joined class names; it is written
to `WORKDIR/splits.json`, and a run resumed in a workdir checks it gets the same split.
"""

from __future__ import annotations

import json
import os
import zlib

import numpy as np

from meta_align_jax import io
from meta_align_jax.data import augment
from meta_align_jax.data.loading import ModalityData, Sources

SPLITS = ('train', 'val', 'test')
SPLITS_FILE = io.SPLITS_FILE
# Independent random streams derived from config.seed, one per use.
STREAM_SPLITS = 0x5B17
STREAM_TARGET_SUBSET = 0x7A56
STREAM_TARGET_CLASSES = 0x7A57


def joined_classes(sources: Sources) -> list[str]:
  """Sorted names of the classes with examples in both the source and the target modality."""
  def present(m: ModalityData) -> set[str]:
    counts = np.bincount(m.label, minlength=len(m.class_names))
    return {name for name, c in zip(m.class_names, counts) if c > 0}
  return sorted(present(sources.source) & present(sources.target))


def _check_fractions(fractions) -> tuple[float, float, float]:
  fr = tuple(float(f) for f in fractions)
  if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
    raise ValueError(f'config.data.split_fractions={tuple(fractions)} must be three non-negative '
                     f'fractions (train, val, test) summing to 1.')
  return fr


def split_classes(names: list[str], seed: int, fractions) -> dict[str, list[str]]:
  """Shuffles sorted `names` with `seed` and cuts them by `fractions` (rounded; test takes the rest)."""
  fr = _check_fractions(fractions)
  names = sorted(names)
  perm = np.random.default_rng([int(seed), STREAM_SPLITS]).permutation(len(names))
  shuffled = [names[i] for i in perm]
  n_train = int(round(fr[0] * len(names)))
  n_val = min(int(round(fr[1] * len(names))), len(names) - n_train)
  return {'train': sorted(shuffled[:n_train]),
          'val': sorted(shuffled[n_train:n_train + n_val]),
          'test': sorted(shuffled[n_train + n_val:])}


def make_splits(config, workdir: str | None = None, *, sources: Sources | None = None
                ) -> dict[str, list[str]]:
  """Class-disjoint splits {'train', 'val', 'test'} -> sorted class names.

  Args:
    config: uses `seed`, `data.split_fractions` and the datasets `config.data` names.
    workdir: when given, the split is saved to `workdir/splits.json`; if that file exists (a
      resumed run) it must hold the same split.
    sources: the loaded modalities; loaded from `config` when None.

  Raises:
    ValueError: bad fractions, no class shared by the two datasets, or a workdir whose saved split
      differs from this config's.
  """
  _check_fractions(config.data.split_fractions)
  if sources is None:
    from meta_align_jax.data.loading import load_sources  # pylint: disable=g-import-not-at-top
    sources = load_sources(config)
  names = joined_classes(sources)
  if not names:
    raise ValueError(
        f'config.data.source_dataset={config.data.source_dataset!r} and config.data.target_dataset='
        f'{config.data.target_dataset!r} share no class name: source classes '
        f'{sources.source.class_names[:10]}..., target classes {sources.target.class_names[:10]}...')
  if config.get('augment', {}).get('rotation_classes', False):
    # The originals are split; each rotation follows its original (data/augment.py).
    groups = augment.group_by_base(names)
    cut = split_classes(list(groups), config.seed, config.data.split_fractions)
    splits = {k: sorted(n for b in v for n in groups[b]) for k, v in cut.items()}
  else:
    splits = split_classes(names, config.seed, config.data.split_fractions)
  if workdir is not None:
    _save(splits, config, workdir)
  return splits


def _save(splits: dict[str, list[str]], config, workdir: str) -> None:
  record = {
      'seed': int(config.seed),
      'split_fractions': [float(f) for f in config.data.split_fractions],
      'source': f'{config.data.source_dataset}/{config.data.source_feature}',
      'target': f'{config.data.target_dataset}/{config.data.target_feature}',
      **splits,
  }
  path = os.path.join(workdir, SPLITS_FILE)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if any(saved.get(k) != splits[k] for k in SPLITS):
      raise ValueError(
          f'{path} holds a different class split than this config gives (seed '
          f'{saved.get("seed")} vs {config.seed}, fractions {saved.get("split_fractions")} vs '
          f'{list(config.data.split_fractions)}, data {saved.get("source")}->{saved.get("target")}). '
          f'Use a fresh workdir for a different experiment.')
    return
  os.makedirs(workdir, exist_ok=True)
  io.write_atomic(path, json.dumps(record, indent=1))


def load_splits(workdir: str) -> dict[str, list[str]]:
  """The split saved in `workdir/splits.json`."""
  with open(os.path.join(workdir, SPLITS_FILE)) as f:
    saved = json.load(f)
  return {k: saved[k] for k in SPLITS}


def target_subset(target: ModalityData, class_names: list[str], shots: int, seed: int
                  ) -> dict[str, np.ndarray]:
  """The fixed low-resource subset of target examples: class name -> example indices.

  For each class, `shots` examples (all of them when it has fewer) are drawn from a stream seeded
  by (`seed`, the class name), among its examples ordered by example_id: a class's subset does not
  depend on which other classes exist or on the order the builder wrote examples in.
  """
  if shots < 1:
    raise ValueError(f'config.data.target_train_shots={shots} must be >= 1.')
  index = {name: i for i, name in enumerate(target.class_names)}
  out = {}
  for name in class_names:
    members = np.flatnonzero(target.label == index[name])
    members = members[np.argsort(target.example_id[members], kind='stable')]
    rng = np.random.default_rng([int(seed), STREAM_TARGET_SUBSET, zlib.crc32(name.encode())])
    take = min(shots, members.size)
    out[name] = np.sort(members[rng.choice(members.size, size=take, replace=False)])
  return out


def target_train_classes(train: list[str], num: int, seed: int) -> list[str]:
  """The meta-train classes with labelled target data: all of `train` when `num` is 0.

  Otherwise `num` classes: the first `num` of a permutation of sorted `train` seeded by `seed`
  (a stream of its own), returned sorted. For one seed and split, the classes of a smaller `num`
  are among those of a larger one. `num` is validated by `checks.check_target_train_classes`.
  """
  names = sorted(train)
  if not num:
    return names
  if not 0 < num <= len(names):
    raise ValueError(f'config.data.target_train_classes={num} must be in [0, {len(names)}] '
                     f'(the number of meta-train classes).')
  perm = np.random.default_rng([int(seed), STREAM_TARGET_CLASSES]).permutation(len(names))
  return sorted(names[i] for i in perm[:num])
