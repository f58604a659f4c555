"""The fixed evaluation episodes (target modality, held-out classes) and the retrieval set.

The episode list of a split is a pure function of (config.seed, split, the split's classes,
config.eval.{ways,shots,queries}, target label noise): it never depends on the method, so every
method is scored on the same episodes. Episode e is drawn from its own seed, so a longer list
extends a shorter one. With a workdir the list is saved as `WORKDIR/episodes_<split>.npz` (example
indices, labels and the example ids they point to) and later calls reload it, so it stays fixed
even if the sampler changes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import numpy as np

from meta_align_jax.data import checks
from meta_align_jax.data import sampling
from meta_align_jax.data import splits as splits_lib
from meta_align_jax.data import tasks
from meta_align_jax.data.episodes import class_groups
from meta_align_jax.data.loading import ModalityData, Sources, load_sources
from meta_align_jax.data.sampling import ClassTable
from meta_align_jax.data.tfsetup import configure, tf

_FORMAT_VERSION = 1
_CHUNK = 1000
_STREAM_RETRIEVAL = 0x3E7


@dataclasses.dataclass(frozen=True)
class EvalEpisodes:
  """A fixed list of E target few-shot episodes, as indices into `data.x`.

  `as_dict()` gives the contract layout with inputs gathered; `batch(start, stop)` gathers only a
  slice of episodes, for evaluating long lists of large inputs without holding them all at once.
  """
  data: ModalityData
  support_idx: np.ndarray        # int32 [E, N*K]
  support_y: np.ndarray          # int32 [E, N*K], observed (possibly noisy) labels
  support_clean_y: np.ndarray    # int32 [E, N*K], true labels
  query_idx: np.ndarray          # int32 [E, N*Q]
  query_y: np.ndarray            # int32 [E, N*Q]
  classes: np.ndarray            # int32 [E, N], index into class_names
  class_names: tuple[str, ...]   # the split's classes

  def __len__(self) -> int:
    return int(self.support_idx.shape[0])

  def batch(self, start: int = 0, stop: int | None = None) -> dict:
    s = slice(start, stop)
    return {
        'support': {'x': self.data.x[self.support_idx[s]], 'y': self.support_y[s]},
        'query': {'x': self.data.x[self.query_idx[s]], 'y': self.query_y[s]},
        'support_clean_y': self.support_clean_y[s],
    }

  def as_dict(self) -> dict:
    return self.batch(0, None)


def _default_num_episodes(config, split: str) -> int:
  return int(config.train.val_episodes if split == 'val' else config.eval.num_episodes)


def _metadata(config, split: str, names: list[str]) -> dict:
  return {
      'version': _FORMAT_VERSION,
      'seed': int(config.seed),
      'split': split,
      'target': f'{config.data.target_dataset}/{config.data.target_feature}',
      'ways': int(config.eval.ways), 'shots': int(config.eval.shots),
      'queries': int(config.eval.queries),
      'target_noise': float(config.data.target_noise),
      'noise_kind': config.data.noise_kind if config.data.target_noise > 0 else None,
      'classes': list(names),
  }


def _draw(config, split: str, table: ClassTable, num_episodes: int) -> dict[str, np.ndarray]:
  spec = tasks.FewShotSpec(config.eval.ways, config.eval.shots, config.eval.queries,
                           noise_rate=float(config.data.target_noise),
                           noise_kind=config.data.noise_kind, with_clean=True)
  seed = sampling.base_seed(config.seed, sampling.STREAM_EVAL[split])

  def draw(episode):
    task = tasks.few_shot(sampling.fold(seed, episode), table, spec)
    ways = config.eval.ways
    return {'support_idx': task['support']['idx'], 'support_y': task['support']['y'],
            'support_clean_y': task['support']['clean_y'], 'query_idx': task['query']['idx'],
            'query_y': task['query']['y'],
            'classes': task['support']['label'][::config.eval.shots][:ways]}

  ds = tf.data.Dataset.range(num_episodes).map(draw, num_parallel_calls=tf.data.AUTOTUNE,
                                               deterministic=True).batch(_CHUNK)
  parts = list(ds.as_numpy_iterator())
  return {k: np.concatenate([p[k] for p in parts]).astype(np.int32) for k in parts[0]}


def _path(workdir: str, split: str) -> str:
  return os.path.join(workdir, f'episodes_{split}.npz')


def _load(path: str, meta: dict, num_episodes: int, data: ModalityData):
  if not os.path.exists(path):
    return None
  with np.load(path) as f:
    saved = {k: f[k] for k in f.files}
  saved_meta = json.loads(str(saved.pop('metadata')))
  if saved_meta != meta or saved['support_idx'].shape[0] < num_episodes:
    logging.warning('%s was made for other settings (%s, %d episodes); making it again for %s, '
                    '%d episodes.', path, saved_meta, saved['support_idx'].shape[0], meta,
                    num_episodes)
    return None
  ids = saved.pop('support_example_id'), saved.pop('query_example_id')
  if (saved['support_idx'].max() >= data.num_examples or saved['query_idx'].max() >= data.num_examples
      or not np.array_equal(data.example_id[saved['support_idx']], ids[0])
      or not np.array_equal(data.example_id[saved['query_idx']], ids[1])):
    raise ValueError(f'{path} points at examples that differ from the loaded target dataset '
                     f'{meta["target"]!r} (it was re-prepared or changed). Delete the file to draw '
                     f'new episodes, knowing that results will not be comparable with older ones.')
  return {k: v[:num_episodes] for k, v in saved.items()}


def _save(path: str, meta: dict, episodes: dict[str, np.ndarray], data: ModalityData) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f'{path}.tmp{os.getpid()}.npz'
  np.savez(tmp, metadata=np.asarray(json.dumps(meta, sort_keys=True)),
           support_example_id=data.example_id[episodes['support_idx']],
           query_example_id=data.example_id[episodes['query_idx']], **episodes)
  os.replace(tmp, path)


def eval_episodes(config, split: str, num_episodes: int | None = None,
                  workdir: str | None = None, *, sources: Sources | None = None) -> EvalEpisodes:
  """The fixed target episodes of `split`, as indices (see `make_eval_episodes`)."""
  configure()
  num_episodes = _default_num_episodes(config, split) if num_episodes is None else num_episodes
  checks.check_eval_config(config, split, num_episodes)
  sources = sources if sources is not None else load_sources(config)
  checks.check_sources(config, sources)
  writer = workdir if (workdir is not None and jax.process_index() == 0) else None
  names = splits_lib.make_splits(config, writer, sources=sources)[split]
  tgt_name = f'{config.data.target_dataset}/{config.data.target_feature}'
  if not names:
    raise ValueError(f'The {split} split has no class (config.data.split_fractions='
                     f'{tuple(config.data.split_fractions)}).')
  table = ClassTable.build(class_groups(sources.target, names), names)
  checks.check_few_shot(table, ways=config.eval.ways,
                        per_class=config.eval.shots + config.eval.queries, ways_field='eval.ways',
                        per_class_fields='config.eval.shots + config.eval.queries',
                        what=f'the {split} split of {tgt_name}')
  meta = _metadata(config, split, names)
  episodes = None
  if workdir is not None:
    episodes = _load(_path(workdir, split), meta, num_episodes, sources.target)
  if episodes is None:
    episodes = _draw(config, split, table, num_episodes)
    if writer is not None:
      _save(_path(writer, split), meta, episodes, sources.target)
  return EvalEpisodes(data=sources.target, class_names=tuple(names), **episodes)


def make_eval_episodes(config, split: str, num_episodes: int | None = None,
                       workdir: str | None = None, *, sources: Sources | None = None) -> dict:
  """The FIXED list of target few-shot episodes on `split`'s classes, inputs gathered.

  Args:
    config: uses seed, config.eval.{ways,shots,queries}, config.data.{target_noise,noise_kind}.
    split: 'val' (meta-validation) or 'test' (meta-test); 'train' is allowed for diagnostics.
    num_episodes: default config.train.val_episodes for 'val', config.eval.num_episodes otherwise.
    workdir: save the list to / reload it from `workdir/episodes_<split>.npz`.
    sources: injected modalities; loaded from config when None.

  Returns:
    {'support': {'x': [E, N*K, ...], 'y': [E, N*K]}, 'query': {'x': [E, N*Q, ...], 'y': [E, N*Q]},
     'support_clean_y': [E, N*K]}; support 'y' carries the target label noise, if any.
  """
  return eval_episodes(config, split, num_episodes, workdir, sources=sources).as_dict()


def make_retrieval_set(config, split: str, *, sources: Sources | None = None,
                       max_per_class: int | None = None) -> dict[str, np.ndarray]:
  """Paired source and target examples of `split`'s classes, for cross-modal retrieval.

  Pairs are instances sharing an example_id when source and target come from one dataset and
  have such pairs; otherwise (weak pairs) each class contributes min(#source, #target) examples of
  each side, drawn with the seed. `max_per_class` caps the pairs per class.

  Returns:
    {'source_x': [M, *source.input_shape], 'target_x': [M, *target.input_shape], 'y': int32 [M]}
    with `y` the class's index in the split's (sorted) class list.
  """
  sources = sources if sources is not None else load_sources(config)
  index = retrieval_indices(config, split, sources=sources, max_per_class=max_per_class)
  return {'source_x': sources.source.x[index['source_idx']],
          'target_x': sources.target.x[index['target_idx']], 'y': index['y']}


def retrieval_indices(config, split: str, *, sources: Sources | None = None,
                      max_per_class: int | None = None) -> dict[str, np.ndarray]:
  """`make_retrieval_set` as indices: {'source_idx', 'target_idx', 'y'}, int arrays [M]."""
  if split not in ('train', 'val', 'test'):
    raise ValueError(f"split={split!r}: use 'train', 'val' or 'test'.")
  if max_per_class is not None and (int(max_per_class) != max_per_class or max_per_class < 1):
    raise ValueError(f'max_per_class={max_per_class!r} must be a positive integer or None.')
  sources = sources if sources is not None else load_sources(config)
  checks.check_sources(config, sources)
  names = splits_lib.make_splits(config, sources=sources)[split]
  if not names:
    raise ValueError(f'The {split} split has no class (config.data.split_fractions='
                     f'{tuple(config.data.split_fractions)}).')
  same_dataset = config.data.source_dataset == config.data.target_dataset
  rng = np.random.default_rng([int(config.seed), _STREAM_RETRIEVAL, splits_lib.SPLITS.index(split)])
  source_idx, target_idx, ys = [], [], []
  for c, (src, tgt) in enumerate(zip(class_groups(sources.source, names),
                                     class_groups(sources.target, names))):
    pairs = _instance_pairs(sources, src, tgt) if same_dataset else np.zeros([0, 2], np.int64)
    if len(pairs):
      pairs = pairs[rng.permutation(len(pairs))]
      s_idx, t_idx = pairs[:, 0], pairs[:, 1]
    else:
      m = min(len(src), len(tgt))
      s_idx, t_idx = rng.permutation(src)[:m], rng.permutation(tgt)[:m]
    s_idx, t_idx = s_idx[:max_per_class], t_idx[:max_per_class]
    source_idx.append(s_idx)
    target_idx.append(t_idx)
    ys.append(np.full(len(s_idx), c, np.int32))
  return {'source_idx': np.concatenate(source_idx).astype(np.int64),
          'target_idx': np.concatenate(target_idx).astype(np.int64), 'y': np.concatenate(ys)}


def _instance_pairs(sources: Sources, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
  """[M, 2] (source index, target index) of the examples of one class sharing an example_id."""
  by_id = {}
  for s in src:
    by_id.setdefault(int(sources.source.example_id[s]), int(s))
  pairs = [(by_id[int(sources.target.example_id[t])], int(t)) for t in tgt
           if int(sources.target.example_id[t]) in by_id]
  return np.asarray(pairs, np.int64).reshape(-1, 2)
