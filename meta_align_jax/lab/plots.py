"""The sweep's plots: accuracy vs shots / noise, learning curves, PCA of the embeddings.

matplotlib and JAX load inside the functions that need them; `write_all` also writes the tables
(`lab.results`).
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import logging

from meta_align_jax.io import METRICS_FILE
from meta_align_jax.lab import results
from meta_align_jax.lab.spec import RUN_FILE



def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save(fig, path: str) -> str:
  """Lays out, writes (PNG, 90 dpi) and closes `fig`; returns `path`."""
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  _plt().close(fig)
  return path


def accuracy_axes(ax, x: str, title: str, *, title_size: int = 10, legend_size: int = 7) -> None:
  """Labels, title, grid and legend of an accuracy-vs-shots/noise panel."""
  ax.set_xlabel('target label noise (%)' if x == 'noise' else 'shots')
  ax.set_ylabel('meta-test accuracy (%)')
  ax.set_title(title, fontsize=title_size)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=legend_size)


def plot_sweep(rows: list[dict], out_dir: str, *, x: str, fixed: dict, name: str) -> list[str]:
  """Accuracy vs `x` ('shots' or 'noise'), one line per method, one PNG per task."""
  plt = _plt()
  written = []
  for task in sorted({r['task'] for r in rows}):
    sel = [r for r in rows if r['task'] == task and all(r[k] == v for k, v in fixed.items())]
    if len({r[x] for r in sel}) < 2:
      continue
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for method in sorted({r['method'] for r in sel}):
      pts = sorted((r[x], r['accuracy_mean'], r['accuracy_ci95']) for r in sel
                   if r['method'] == method)
      if len(pts) < 2:
        continue
      xs = [100 * p[0] if x == 'noise' else p[0] for p in pts]
      ax.errorbar(xs, [100 * p[1] for p in pts], yerr=[100 * p[2] for p in pts], marker='o',
                  capsize=3, label=method)
    accuracy_axes(ax, x, f'{task}: accuracy vs {x}')
    written.append(save(fig, os.path.join(out_dir, f'{name}_{task}.png')))
  return written


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plot_learning_curves(root: str, out_dir: str, *, shots: int = 1, noise: float = 0.0
                         ) -> list[str]:
  """Training losses (seed-averaged) from metrics.jsonl, per task: one panel per loss."""
  plt = _plt()
  runs = [r for r in results.find_runs(root)
          if int(r['labels']['shots']) == shots and float(r['labels']['noise']) == noise]
  written = []
  for task in sorted({r['labels']['task'] for r in runs}):
    keys = ('train/meta_loss', 'train/align_loss')
    fig, axes = plt.subplots(1, len(keys), figsize=(9, 3.4))
    for method in sorted({r['labels']['method'] for r in runs if r['labels']['task'] == task}):
      members = [read_metrics(r['dir']) for r in runs
                 if r['labels']['task'] == task and r['labels']['method'] == method]
      for ax, key in zip(axes, keys):
        series = [{m['step']: m[key] for m in ms if key in m} for ms in members]
        steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
        if not steps:
          continue
        ax.plot(steps, [np.mean([s[t] for s in series]) for t in steps], label=method)
    for ax, key in zip(axes, keys):
      ax.set_xlabel('step')
      ax.set_title(key, fontsize=9)
      ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f'{task}: training losses ({shots}-shot, noise {100 * noise:.0f} %; mean over '
                 'seeds)', fontsize=9)
    written.append(save(fig, os.path.join(out_dir, f'learning_curves_{task}.png')))
  return written


def pca_2d(a: np.ndarray) -> np.ndarray:
  a = a - a.mean(0, keepdims=True)
  _, _, vt = np.linalg.svd(a, full_matrices=False)
  return a @ vt[:2].T


def plot_embeddings(workdir: str, path: str, *, max_classes: int = 6, per_class: int = 15) -> str:
  """2-D PCA of source and target embeddings of meta-test classes: at init and after training.

  The initial parameters are `init_train_state(config, model, key(config.seed))`, exactly the
  run's starting point; the trained ones its best (or final) checkpoint.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from meta_align_jax import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from meta_align_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from meta_align_jax import train_step  # pylint: disable=g-import-not-at-top
  plt = _plt()
  config, model, state = checkpoint_lib.restore(workdir, 'best')
  init = train_step.init_train_state(config, model, jax.random.key(config.seed)).params
  rs = data_lib.make_retrieval_set(config, 'test', max_per_class=per_class)
  ys = np.asarray(rs.get('y'))
  keep = np.isin(ys, np.unique(ys)[:max_classes])
  xs, xt, y = np.asarray(rs['source_x'])[keep], np.asarray(rs['target_x'])[keep], ys[keep]
  run_file = os.path.join(workdir, RUN_FILE)
  method = json.load(open(run_file))['method'] if os.path.exists(run_file) else 'training'
  fig, axes = plt.subplots(1, 2, figsize=(9, 4))
  cmap = plt.get_cmap('tab10')
  for ax, (title, params) in zip(axes, (('before (initialisation)', init),
                                        (f'after {method} (step {int(state.step)})',
                                         state.params))):
    zs = np.asarray(jax.jit(lambda p, x: model.embed(p, x, 'source'))(params, xs))
    zt = np.asarray(jax.jit(lambda p, x: model.embed(p, x, 'target'))(params, xt))
    proj = pca_2d(np.concatenate([zs, zt]))
    ps, pt = proj[:len(zs)], proj[len(zs):]
    for c in np.unique(y):
      ax.scatter(*ps[y == c].T, marker='o', s=14, color=cmap(int(c) % 10), alpha=0.7)
      ax.scatter(*pt[y == c].T, marker='x', s=18, color=cmap(int(c) % 10), alpha=0.9)
    ax.set_title(f'{title}', fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  axes[0].scatter([], [], marker='o', color='k', label=f'source ({config.source.modality})')
  axes[0].scatter([], [], marker='x', color='k', label=f'target ({config.target.modality})')
  axes[0].legend(fontsize=7)
  fig.suptitle(f'PCA of Z, {len(np.unique(y))} meta-test classes (colour = class): '
               f'{os.path.relpath(workdir)}', fontsize=8)
  return save(fig, path)


def write_all(root: str, out_dir: str | None = None, *, embeddings_for: list[str] = ()) -> dict:
  """Tables, shot / noise / learning-curve plots, and PCA plots of the given run dirs."""
  out_dir = out_dir or os.path.join(root, 'plots')
  os.makedirs(out_dir, exist_ok=True)
  rows = results.write_tables(root)
  plots = []
  plots += plot_sweep(rows, out_dir, x='shots', fixed={'noise': 0.0}, name='accuracy_vs_shots')
  min_shots = min((r['shots'] for r in rows), default=1)
  plots += plot_sweep(rows, out_dir, x='noise', fixed={'shots': min_shots},
                      name='accuracy_vs_noise')
  plots += plot_learning_curves(root, out_dir, shots=min_shots)
  from meta_align_jax import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  for workdir in embeddings_for:
    labels = json.load(open(os.path.join(workdir, RUN_FILE)))
    name = f"embeddings_{labels['task']}_{labels['method']}_seed{labels['seed']}.png"
    try:
      plots.append(plot_embeddings(workdir, os.path.join(out_dir, name)))
    except checkpoint_lib.IncompatibleCheckpointError as e:
      # e.g. a run trained before a model change renamed parameters: its results stand, but its
      # checkpoint no longer restores into today's model. The other plots are still drawn.
      logging.warning('No embedding plot for %s: %s', workdir, str(e).splitlines()[0])
  return {'rows': rows, 'plots': plots}
