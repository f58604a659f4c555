"""Evaluation protocol: target few-shot accuracy on fixed episodes, and cross-modal retrieval.

Evaluators are small objects in a registry keyed by name (`EVALUATORS`, `register`); each says
when a config asks for it (`enabled`), and `evaluator_names` asks the registry. Each is built
once from `(config, model, data, split=..., workdir=..., jit_cache=...)`, which loads its fixed
data and compiles nothing yet, and is then called with parameters, returning named metrics.
Evaluators given the same `jit_cache` dict share their jitted functions (and loaded episodes),
so meta-validation and meta-test episodes of one shape compile once (an unrolled evaluation step
can take minutes to compile on CPU). Adding an evaluator is one class and its
`@register(name, enabled=...)`; it touches neither the training loop nor `evaluate`.

- `few_shot`: target-modality N-way K-shot tasks on the held-out classes of a split, from the
  fixed episode list `data.make_eval_episodes`. Each episode is adapted on its support by
  `make_eval_step` (fine-tuning for `config.eval.inner_steps`, or prototypes) and its queries
  scored; reported: mean accuracy and its 95 % confidence interval 1.96 * std / sqrt(n) over the
  episodes. Episodes go through one compiled call per `config.eval.batch_episodes`; the last chunk
  is padded (with repeated episodes, dropped from the result) so that one shape compiles.
- `retrieval`: every item of one modality queries all items of the other (cosine similarity in
  Z, embeddings from `model.embed` under jit); a hit is a retrieved item of the query's class.
  Reported per direction (source_to_target, target_to_source): R@1, R@5, R@10 and the median
  rank of the first hit.

`evaluate(config, workdir, checkpoint=...)` restores a checkpoint, runs the evaluators of
`config.eval` and writes WORKDIR/eval_results.json; `format_results` renders the console table.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable

import jax
import numpy as np

from meta_align_jax import checkpoint as checkpoint_lib
from meta_align_jax import io
from meta_align_jax import train_step as train_step_lib
from meta_align_jax.feeds import pipeline
from meta_align_jax.io import EPISODES_FILE, RESULTS_FILE  # (compared per episode: lab/results.py)
from meta_align_jax.models import registry

RECALL_AT = (1, 5, 10)
_EMBED_BATCH = 256      # examples per compiled embedding call (the last call is padded)
_RANK_BLOCK = 1024      # queries scored at once on the host (memory: block x gallery floats)


@dataclasses.dataclass(frozen=True)
class Registered:
  """An evaluator class and when a config asks for it."""
  cls: Callable[..., Any]
  enabled: Callable[[Any], bool]


EVALUATORS: dict[str, Registered] = {}


def register(name: str, *, enabled: Callable[[Any], bool] = lambda config: True):
  """Class decorator adding an evaluator to `EVALUATORS` under `name`.

  `enabled(config)` says whether `config` asks for it (default: always); `evaluate` runs the
  enabled ones, in registration order.
  """
  def add(cls):
    if name in EVALUATORS:
      raise ValueError(f'An evaluator named {name!r} is already registered '
                       f'({EVALUATORS[name].cls.__name__}).')
    EVALUATORS[name] = Registered(cls, enabled)
    return cls
  return add


def data_api(data=None):
  """The data pipeline: `data` when given (tests, research code), else the data package's
  pipeline with its feeds (`meta_align_jax.feeds.pipeline.Pipeline`).

  Anything with `make_train_iterator`, `make_eval_episodes`, `make_retrieval_set` (and optionally
  `make_splits`) of the data contract will do.
  """
  return data if data is not None else pipeline.Pipeline()


def evaluator_names(config) -> tuple[str, ...]:
  """The registered evaluators `config` asks for, in registration order."""
  return tuple(name for name, e in EVALUATORS.items() if e.enabled(config))


def make_evaluators(config, model, data, *, split: str, workdir: str | None = None,
                    names=None, jit_cache: dict | None = None) -> dict[str, Any]:
  """Builds the named evaluators (default: those `config.eval` asks for), loading their data."""
  names = tuple(names or evaluator_names(config))
  unknown = [n for n in names if n not in EVALUATORS]
  if unknown:
    raise ValueError(f'Unknown evaluator(s) {unknown}; known: {sorted(EVALUATORS)}.')
  jit_cache = {} if jit_cache is None else jit_cache
  return {n: EVALUATORS[n].cls(config, model, data, split=split, workdir=workdir,
                               jit_cache=jit_cache)
          for n in names}


def _cached(jit_cache: dict, key: str, make: Callable[[], Any]):
  if key not in jit_cache:
    jit_cache[key] = make()
  return jit_cache[key]


def _on_one_device(params):
  """Commits parameters to the first local device: one signature, so one compile, whether they
  come from a checkpoint (host arrays), a jitted loop or a pmapped one."""
  return jax.device_put(params, jax.local_devices()[0])


# --------------------------------------------------------------------------- few-shot accuracy


def _episode_arrays(episodes) -> dict:
  """The part of an episode dict the eval step takes (drops e.g. `support_clean_y`)."""
  return {part: {k: np.asarray(episodes[part][k]) for k in ('x', 'y')}
          for part in ('support', 'query')}


def mean_ci95(values) -> tuple[float, float]:
  """Mean and the half-width of its normal 95 % confidence interval, 1.96 * std / sqrt(n)."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(1.96 * values.std() / np.sqrt(values.size))


def episode_accuracies(step, params, episodes, chunk: int) -> np.ndarray:
  """The accuracy of every episode of `episodes` (`_episode_arrays`) under the eval step `step`.

  `chunk` episodes go through one compiled call; the last chunk wraps around (repeated episodes,
  dropped from the result) so that one shape compiles. One host sync, at the end.
  """
  n = episodes['query']['y'].shape[0]
  params = _on_one_device(params)
  outs = []
  for start in range(0, n, chunk):
    idx = np.arange(start, start + chunk) % n   # the last chunk wraps around: one shape
    batch = jax.tree.map(lambda a, idx=idx: a[idx], episodes)
    outs.append((step(params, batch)['accuracy'], min(chunk, n - start)))
  return np.concatenate([np.asarray(acc)[:k] for acc, k in outs])   # one host sync, at the end


@register('few_shot')
class FewShotEvaluator:
  """Accuracy on a fixed list of target few-shot episodes of `split`'s classes.

  Its eval step is `jit_cache[step_key]`; its episodes are cached in `jit_cache` too (by split,
  count and workdir), so evaluators of the same episodes (`few_shot_other`) load them once.
  """

  def __init__(self, config, model, data, *, split: str, workdir: str | None = None,
               num_episodes: int | None = None, jit_cache: dict | None = None,
               step_key: str = 'eval_step/target'):
    self.split = split
    jit_cache = {} if jit_cache is None else jit_cache
    num_episodes = int(num_episodes or config.eval.num_episodes)
    episodes = _cached(jit_cache, f'episodes/{split}/{num_episodes}/{workdir}',
                       lambda: _episode_arrays(data.make_eval_episodes(
                           config, split, num_episodes=num_episodes, workdir=workdir)))
    self.num_episodes = episodes['query']['y'].shape[0]
    if self.num_episodes != num_episodes:
      raise ValueError(f'The data pipeline gave {self.num_episodes} {split!r} episodes; '
                       f'{num_episodes} were asked for.')
    self._episodes = episodes
    self._chunk = min(int(config.eval.batch_episodes), self.num_episodes)
    self._eval_step = _cached(jit_cache, step_key,
                              lambda: train_step_lib.make_eval_step(config, model, side='target'))

  def episode_accuracies(self, params) -> np.ndarray:
    return episode_accuracies(self._eval_step, params, self._episodes, self._chunk)

  def _score(self, params) -> tuple[np.ndarray, float, float]:
    accuracies = np.asarray(self.episode_accuracies(params), np.float32)
    return (accuracies, *mean_ci95(accuracies))

  def __call__(self, params) -> dict:
    self.last_episode_accuracies, mean, ci95 = self._score(params)
    return {'accuracy_mean': mean, 'accuracy_ci95': ci95, 'num_episodes': self.num_episodes}


# --------------------------------------------------------------------------- retrieval


OTHER_METHOD = {'finetune': 'proto', 'proto': 'finetune'}


@register('few_shot_other', enabled=lambda config: bool(config.eval.get('report_both', False)))
class OtherProtocolEvaluator(FewShotEvaluator):
  """The same episodes scored with the other protocol (config.eval.report_both): the results
  get accuracy_<other>_mean / _ci95; config.eval.method stays the primary, reported as
  accuracy_mean (and accuracy_<method>_mean)."""

  def __init__(self, config, model, data, *, split: str, workdir: str | None = None,
               jit_cache: dict | None = None):
    self.method = OTHER_METHOD[config.eval.method]
    other = config.copy_and_resolve_references()
    other.eval.method = self.method
    super().__init__(other, model, data, split=split, workdir=workdir, jit_cache=jit_cache,
                     step_key=f'eval_step/target/{self.method}')

  def __call__(self, params) -> dict:
    self.other_episode_accuracies, mean, ci95 = self._score(params)
    return {f'accuracy_{self.method}_mean': mean, f'accuracy_{self.method}_ci95': ci95}


def _normalize(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def first_hit_ranks(query, gallery, query_y, gallery_y) -> np.ndarray:
  """1-based rank of the first gallery item of the query's class, by cosine similarity.

  Ties count in the query's favour (only strictly more similar items rank above). Queries whose
  class is absent from the gallery get rank 0 (left out by `retrieval_metrics`).
  """
  query, gallery = _normalize(query), _normalize(gallery)
  query_y, gallery_y = np.asarray(query_y), np.asarray(gallery_y)
  ranks = []
  for start in range(0, len(query), _RANK_BLOCK):
    sim = query[start:start + _RANK_BLOCK] @ gallery.T
    same = query_y[start:start + _RANK_BLOCK, None] == gallery_y[None, :]
    best = np.where(same, sim, -np.inf).max(axis=1)
    rank = 1 + (sim > best[:, None]).sum(axis=1)
    ranks.append(np.where(same.any(axis=1), rank, 0))
  return np.concatenate(ranks) if ranks else np.zeros([0], np.int64)


def retrieval_metrics(query, gallery, query_y, gallery_y, ks=RECALL_AT) -> dict:
  """R@k (fraction of queries with a same-class item in the top k) and the median first-hit rank."""
  ranks = first_hit_ranks(query, gallery, query_y, gallery_y)
  ranks = ranks[ranks > 0]
  if not ranks.size:
    raise ValueError('Retrieval: no query has an item of its class in the gallery.')
  out = {f'R@{k}': float((ranks <= k).mean()) for k in ks}
  out['median_rank'] = float(np.median(ranks))
  out['num_queries'] = int(ranks.size)
  return out


def _embed_all(embed, params, x: np.ndarray) -> np.ndarray:
  n, chunk = len(x), min(_EMBED_BATCH, len(x))
  outs = []
  for start in range(0, n, chunk):
    idx = np.arange(start, start + chunk) % n
    outs.append((embed(params, x[idx]), min(chunk, n - start)))
  return np.concatenate([np.asarray(z)[:k] for z, k in outs])


def embed_fns(model, jit_cache: dict | None = None) -> dict:
  """`{side: jitted model.embed}` for both sides, shared through `jit_cache` ('embed/<side>')."""
  jit_cache = {} if jit_cache is None else jit_cache
  make = lambda side: lambda: jax.jit(functools.partial(model.embed, side=side))
  return {side: _cached(jit_cache, f'embed/{side}', make(side)) for side in ('source', 'target')}


def embeddings(embed: dict, params, xs: dict) -> dict:
  """`{side: Z of xs[side]}` with the jitted `embed[side]` (`embed_fns`), on one device."""
  params = _on_one_device(params)
  return {side: _embed_all(embed[side], params, x) for side, x in xs.items()}


@register('retrieval', enabled=lambda config: bool(config.eval.retrieval))
class RetrievalEvaluator:
  """Cross-modal retrieval R@1/5/10 and median rank on `split`'s classes, both directions."""

  def __init__(self, config, model, data, *, split: str, workdir: str | None = None,
               jit_cache: dict | None = None):
    del workdir   # the retrieval set is a pure function of the config and the split
    self.split = split
    rs = data.make_retrieval_set(config, split)
    self._x = {'source': np.asarray(rs['source_x']), 'target': np.asarray(rs['target_x'])}
    self._y = {'source': np.asarray(rs.get('source_y', rs['y'])),
               'target': np.asarray(rs.get('target_y', rs['y']))}
    self._embed = embed_fns(model, jit_cache)

  def __call__(self, params) -> dict:
    z = embeddings(self._embed, params, self._x)
    return {'retrieval': {
        'source_to_target': retrieval_metrics(z['source'], z['target'], self._y['source'],
                                              self._y['target']),
        'target_to_source': retrieval_metrics(z['target'], z['source'], self._y['target'],
                                              self._y['source']),
    }}


# --------------------------------------------------------------------------- the protocol


def run_evaluators(evaluators: dict, params) -> dict:
  results = {}
  for evaluator in evaluators.values():
    results.update(evaluator(params))
  return results


def flat_scalars(results: dict, prefix: str) -> dict[str, float]:
  """{'<prefix>/accuracy_mean': ..., '<prefix>/retrieval/source_to_target/R@1': ...}; no counts."""
  out = {}
  for k, v in results.items():
    if k.startswith('num_'):
      continue
    if isinstance(v, dict):
      out.update(flat_scalars(v, f'{prefix}/{k}'))
    elif isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
      out[f'{prefix}/{k}'] = float(v)
  return out


def write_results(workdir: str, results: dict) -> str:
  """Writes WORKDIR/eval_results.json (process 0 only; atomic) and returns its path."""
  path = os.path.join(workdir, RESULTS_FILE)
  if jax.process_index() == 0:
    io.write_atomic(path, json.dumps(results, indent=2) + '\n')
  return path


def write_episode_accuracies(workdir: str, accuracies, suffix: str = '') -> str:
  """Writes WORKDIR/episode_accuracies<suffix>.npy atomically and returns its path."""
  path = os.path.join(workdir, EPISODES_FILE.replace('.npy', f'{suffix}.npy'))
  tmp = f'{path}.tmp{os.getpid()}.npy'
  np.save(tmp, np.asarray(accuracies, np.float32))
  os.replace(tmp, path)
  return path


def evaluate(config, workdir: str, *, checkpoint='best', data=None, evaluators=None,
             writer=None, write: bool = True) -> dict:
  """Evaluates a checkpoint of `workdir` on `config.eval.split`; writes eval_results.json.

  The accuracy of every meta-test episode goes to episode_accuracies.npy beside it (EPISODES_FILE).

  Args:
    config: the run's config (its `eval` fields say what to evaluate); it must agree with the
      workdir's saved config on every field that changes shapes.
    workdir: a work directory with checkpoints.
    checkpoint: 'best' (meta-validation accuracy; the latest when none was validated), 'latest'
      or a step number.
    data: the data pipeline (see `data_api`).
    evaluators: prebuilt evaluators (from `make_evaluators`), to reuse compiled functions.
    writer: an optional clu MetricWriter for `<split>/...` scalars at the checkpoint's step.
    write: False evaluates without writing anything to `workdir` (e.g. a read-only one).

  Returns:
    The results dict written to eval_results.json.
  """
  checkpoint_lib.check_compatible(workdir, config)
  model = registry.build_model(config)
  split = config.eval.split
  # The checkpoint first: a workdir without one fails before any data is built.
  manager = checkpoint_lib.make_manager(workdir, config, read_only=True)
  try:
    step = checkpoint_lib.resolve_step(manager, checkpoint)
    state = checkpoint_lib.restore_state(manager, config, model, step)
  finally:
    manager.close()
  if evaluators is None:
    evaluators = make_evaluators(config, model, data_api(data), split=split,
                                 workdir=workdir if write else None)
  e = config.eval
  results = {
      'split': split, 'checkpoint': str(checkpoint), 'checkpoint_step': step,
      # None when there is no source (single-modality few-shot learning, config.task.modalities).
      'source_modality': (config.source.modality if 'source' in registry.sides(config)
                          else None),
      'target_modality': config.target.modality,
      'ways': e.ways, 'shots': e.shots, 'queries': e.queries, 'method': e.method,
  }
  results.update(run_evaluators(evaluators, state.params))
  if 'accuracy_mean' in results:   # the primary protocol under its own name too
    results[f'accuracy_{e.method}_mean'] = results['accuracy_mean']
    results[f'accuracy_{e.method}_ci95'] = results['accuracy_ci95']
  # Per-episode accuracies of the (first) evaluator that keeps them: few_shot's.
  episodes = next((e.last_episode_accuracies for e in evaluators.values()
                   if getattr(e, 'last_episode_accuracies', None) is not None), None)
  if not write:
    return results
  if episodes is not None and jax.process_index() == 0:
    write_episode_accuracies(workdir, episodes)   # before eval_results.json marks the run done
    for ev in evaluators.values():   # the other protocol's, beside it: episode_accuracies_<m>.npy
      if getattr(ev, 'other_episode_accuracies', None) is not None:
        write_episode_accuracies(workdir, ev.other_episode_accuracies, suffix=f'_{ev.method}')
  write_results(workdir, results)
  if writer is not None:
    writer.write_scalars(step, flat_scalars(results, split))
    writer.flush()
  return results


def format_results(results: dict) -> str:
  """A short console table of `evaluate`'s results."""
  r = results
  which = f" ({r['checkpoint']})" if r['checkpoint'] in ('best', 'latest') else ''
  lines = []
  if 'accuracy_mean' in r:
    lines += [f"Target few-shot: {r['target_modality']}, {r['ways']}-way {r['shots']}-shot "
              f"({r['method']}), split {r['split']}, {r['num_episodes']} episodes, checkpoint "
              f"step {r['checkpoint_step']}{which}",
              f"  accuracy  {100 * r['accuracy_mean']:.2f} % +/- {100 * r['accuracy_ci95']:.2f} % "
              '(95 % CI)']
  if 'retrieval' in r:
    names = {'source_to_target': f"{r['source_modality']} -> {r['target_modality']}",
             'target_to_source': f"{r['target_modality']} -> {r['source_modality']}"}
    width = max(len(n) for n in names.values()) + 2
    lines.append(f"Cross-modal retrieval: split {r['split']}")
    lines.append('  ' + ' ' * width + ''.join(f'{f"R@{k}":>8}' for k in RECALL_AT)
                 + f'{"median rank":>13}')
    for key, name in names.items():
      m = r['retrieval'][key]
      lines.append(f'  {name:<{width}}' + ''.join(f"{100 * m[f'R@{k}']:7.1f}%" for k in RECALL_AT)
                   + f"{m['median_rank']:13.1f}")
  return '\n'.join(lines)
