"""Checkpoint selection (`config.train.select`): which meta-validation score picks 'best'.

- 'target_val': target few-shot accuracy on meta-val episodes (reads target labels: the oracle's
  criterion, and the one of runs made before the low-resource protocol);
- 'source_val': source few-shot accuracy on fixed meta-val source episodes (source labels only);
- 'align_val': minus the symmetric InfoNCE between the embeddings of strong pairs of meta-val
  classes (the pairs found through the source side; no target label exists in the data);
- 'final': no validation; the last checkpoint is evaluated.

`make_selector` returns a callable `params -> {'selection_score', ...}` (higher is better) or None
for 'final'. The label-free selectors take their data from `data.make_selection_data(config)`,
which holds no target label (`tests/test_lowres.py` hands in data whose target labels raise).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from meta_align_jax import evaluate as evaluate_lib
from meta_align_jax import io
from meta_align_jax import losses
from meta_align_jax import train_step as train_step_lib


def select_mode(config) -> str:
  return config.train.get('select', 'target_val')


def checkpoint_to_evaluate(config) -> str:
  """'latest' for select='final' (a fixed step count), else 'best' (by the selection score)."""
  return 'latest' if select_mode(config) == 'final' else 'best'


class SourceValSelector:
  """Mean source few-shot accuracy over fixed meta-val source episodes."""

  def __init__(self, config, model, data, jit_cache):
    sel = data.make_selection_data(config)['source_val']
    self._episodes = evaluate_lib._episode_arrays(sel)  # pylint: disable=protected-access
    self.num_episodes = len(self._episodes['query']['y'])
    self._chunk = min(int(config.eval.batch_episodes), self.num_episodes)
    self._step = evaluate_lib._cached(  # pylint: disable=protected-access
        jit_cache, 'eval_step/source',
        lambda: train_step_lib.make_eval_step(config, model, side='source'))

  def __call__(self, params) -> dict:
    accuracies = evaluate_lib.episode_accuracies(self._step, params, self._episodes, self._chunk)
    mean, ci95 = evaluate_lib.mean_ci95(accuracies)
    return {'selection_score': mean, 'source_accuracy_mean': mean, 'source_accuracy_ci95': ci95}


def pair_infonce(source_z: np.ndarray, target_z: np.ndarray, temperature: float) -> float:
  """Symmetric InfoNCE of row-aligned pairs (losses.info_nce_loss), as a float."""
  return float(losses.info_nce_loss(jnp.asarray(source_z), jnp.asarray(target_z),
                                    temperature=temperature))


class AlignValSelector:
  """Minus the InfoNCE loss of unlabelled strong meta-val pairs in Z (higher is better)."""

  def __init__(self, config, model, data, jit_cache):
    sel = data.make_selection_data(config)['align_val']
    self._x = {'source': np.asarray(sel['source_x']), 'target': np.asarray(sel['target_x'])}
    self._temperature = float(config.align.temperature)
    self._embed = evaluate_lib.embed_fns(model, jit_cache)

  def __call__(self, params) -> dict:
    z = evaluate_lib.embeddings(self._embed, params, self._x)
    loss = pair_infonce(z['source'], z['target'], self._temperature)
    return {'selection_score': -loss, 'align_val_infonce': loss}


class TargetValSelector:
  """Target few-shot meta-val accuracy (reads target labels)."""

  def __init__(self, config, model, data, jit_cache, workdir):
    self._e = evaluate_lib.FewShotEvaluator(config, model, data, split='val', workdir=workdir,
                                            num_episodes=config.train.val_episodes,
                                            jit_cache=jit_cache)

  def __call__(self, params) -> dict:
    scores = self._e(params)
    return {'selection_score': scores['accuracy_mean'], **scores}


def make_selector(config, model, data, *, workdir=None, jit_cache=None):
  """The selector of `config.train.select` (None for 'final' or train.eval_every = 0)."""
  jit_cache = {} if jit_cache is None else jit_cache
  mode = select_mode(config)
  if mode == 'final' or not config.train.eval_every:
    return None
  if mode == 'target_val':
    return TargetValSelector(config, model, data, jit_cache, workdir)
  if not hasattr(data, 'make_selection_data'):
    raise ValueError(f'config.train.select={mode!r} needs a data pipeline with '
                     f'make_selection_data (meta_align_jax.feeds.pipeline.Pipeline, ExportedData).')
  cls = SourceValSelector if mode == 'source_val' else AlignValSelector
  return cls(config, model, data, jit_cache)


def describe(scores: dict) -> str:
  keys = [k for k in scores if k != 'selection_score' and not k.endswith('ci95')
          and isinstance(scores[k], float)]
  return ', '.join(f'{k} {scores[k]:.4f}' for k in keys) or f"score {scores['selection_score']:.4f}"


HISTORY_FILE = 'selection_history.json'
EARLY_STOP_FILE = 'early_stopped.json'


class History:
  """The selection scores of a run (WORKDIR/selection_history.json), for `config.train.patience`.

  Rewritten atomically at every validation; a resumed run keeps the entries up to its start step,
  so a patience count survives a restart exactly. A run that stopped on patience writes
  WORKDIR/early_stopped.json, which marks it finished.
  """

  def __init__(self, workdir: str | None, start_step: int):
    self.workdir = workdir
    self.entries = []
    if workdir is not None and os.path.exists(os.path.join(workdir, HISTORY_FILE)):
      with open(os.path.join(workdir, HISTORY_FILE)) as f:
        self.entries = [e for e in json.load(f) if e['step'] <= start_step]

  def add(self, step: int, score: float) -> None:
    self.entries.append({'step': int(step), 'score': float(score)})
    if self.workdir is not None and jax.process_index() == 0:
      io.write_atomic(os.path.join(self.workdir, HISTORY_FILE), json.dumps(self.entries))

  def since_best(self) -> int:
    """Validations after the best one (the first of equal bests)."""
    scores = [e['score'] for e in self.entries]
    return len(scores) - 1 - int(np.argmax(scores)) if scores else 0

  def should_stop(self, patience: int) -> bool:
    return bool(patience) and self.since_best() >= int(patience)

  def mark_stopped(self, step: int) -> None:
    if self.workdir is not None and jax.process_index() == 0:
      best = max(self.entries, key=lambda e: e['score'])
      io.write_atomic(os.path.join(self.workdir, EARLY_STOP_FILE),
                      json.dumps({'step': int(step), 'best_step': best['step']}))


def early_stopped(workdir: str) -> int | None:
  """The step a run stopped at on patience, or None."""
  path = os.path.join(workdir, EARLY_STOP_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return int(json.load(f)['step'])
