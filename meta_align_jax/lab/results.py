"""Aggregating a sweep directory into results.csv / results.md (the plots: `lab.plots`).

Reads every finished run under ROOT (a directory holding `sweep_run.json`, `eval_results.json`
and, when written by the sweep runner, `episode_accuracies.npy`) and groups runs by
(task, method, shots, noise); seeds are averaged.

Statistics of a group with seeds s = 1..S, each scored on its own n_s fixed meta-test episodes
(the seed fixes the class split and the episodes):
  mean   = (1/S) sum_s mean_s                      (the seed-averaged accuracy)
  ci95   = 1.96 * sqrt(sum_s var_s / n_s) / S      (episode sampling error of that average;
                                                    var_s: the episode variance of seed s)
  seed_std = std over seeds of mean_s (ddof=1)     (training / split variation, reported apart)
The paired difference to the best baseline (the `baseline` method with the highest mean in the
same (task, shots, noise); the oracle and ablations are not baselines) uses the per-episode
differences d = acc_method - acc_baseline on the same episodes of the same seed, with the same
formulas over d. When per-episode accuracies are missing, the difference is unpaired: the
difference of means with ci95 = sqrt(ci_a^2 + ci_b^2).

Only numpy at import time (tests run in seconds); the plots are `lab.plots`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict

import numpy as np

from meta_align_jax.io import CONFIG_FILE, EPISODES_FILE, RESULTS_FILE
from meta_align_jax.lab.spec import RUN_FILE

Z95 = 1.96

CSV_FIELDS = ('task', 'method', 'role', 'shots', 'noise', 'seeds', 'episodes_per_seed',
              'accuracy_mean', 'accuracy_ci95', 'seed_std', 'best_baseline', 'diff_mean',
              'diff_ci95', 'diff_paired', 'r1_target_to_source')


# --------------------------------------------------------------------------- reading runs


def find_runs(root: str) -> list[dict]:
  """Finished runs under `root`: labels + results (+ per-episode accuracies when present)."""
  runs = []
  for dirpath, _, filenames in os.walk(root):
    if RUN_FILE not in filenames or RESULTS_FILE not in filenames:
      continue
    with open(os.path.join(dirpath, RUN_FILE)) as f:
      labels = json.load(f)
    with open(os.path.join(dirpath, RESULTS_FILE)) as f:
      results = json.load(f)
    episodes = None
    if EPISODES_FILE in filenames:
      episodes = np.load(os.path.join(dirpath, EPISODES_FILE)).astype(np.float64)
    runs.append({'dir': dirpath, 'labels': labels, 'results': results, 'episodes': episodes})
  runs.sort(key=lambda r: r['dir'])
  return runs


# eval_results.json fields that decide which meta-test episodes a run was scored on (with the seed).
EPISODE_FIELDS = ('split', 'ways', 'shots', 'queries', 'num_episodes')


def read_workdir(workdir: str) -> dict:
  """A finished work directory of `launch/run.py` (or a sweep run) as a run of `find_runs`.

  Labels: the seed of its config.json. The per-episode accuracies are those of its last
  evaluation (`evaluate.EPISODES_FILE`); without them the run compares unpaired.
  """
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{workdir} has no {RESULTS_FILE}: evaluate it first '
                            '(python launch/run.py --mode eval ...).')
  with open(path) as f:
    results = json.load(f)
  with open(os.path.join(workdir, CONFIG_FILE)) as f:
    seed = int(json.load(f).get('seed', 0))
  ep_path = os.path.join(workdir, EPISODES_FILE)
  episodes = np.load(ep_path).astype(np.float64) if os.path.exists(ep_path) else None
  return {'dir': workdir, 'labels': {'seed': seed}, 'results': results, 'episodes': episodes}


def check_same_episodes(runs_a: list[dict], runs_b: list[dict]) -> None:
  """Refuses to pair runs of one seed that were scored on different meta-test episodes."""
  by_seed = {int(r['labels']['seed']): r for r in runs_b}
  for a in runs_a:
    b = by_seed.get(int(a['labels']['seed']))
    if b is None:
      continue
    for field in EPISODE_FIELDS:
      va, vb = a['results'].get(field), b['results'].get(field)
      if va != vb:
        raise ValueError(f'{a["dir"]} and {b["dir"]} (seed {a["labels"]["seed"]}) were '
                         f'evaluated with {field}={va!r} and {field}={vb!r}: their episodes differ, '
                         'so they cannot be compared episode by episode. Evaluate both with the '
                         'same config.eval.')


def group_key(labels: dict) -> tuple:
  return (labels['task'], labels['method'], int(labels['shots']), float(labels['noise']))


# --------------------------------------------------------------------------- statistics


def seed_stats(per_seed: list[np.ndarray]) -> tuple[float, float, float]:
  """(mean, ci95, seed_std) of a group from each seed's per-episode values (module docstring)."""
  s = len(per_seed)
  means = np.array([np.mean(a) for a in per_seed])
  var_of_mean = sum(np.var(a) / a.size for a in per_seed) / s ** 2
  seed_std = float(np.std(means, ddof=1)) if s > 1 else float('nan')
  return float(means.mean()), float(Z95 * math.sqrt(var_of_mean)), seed_std


def _summary_stats(runs: list[dict]) -> tuple[float, float, float]:
  """As `seed_stats`, from eval_results.json alone (mean and ci95 of each seed)."""
  s = len(runs)
  means = np.array([r['results']['accuracy_mean'] for r in runs])
  cis = np.array([r['results']['accuracy_ci95'] for r in runs])
  seed_std = float(np.std(means, ddof=1)) if s > 1 else float('nan')
  return float(means.mean()), float(math.sqrt(np.sum(cis ** 2)) / s), seed_std


def group_stats(runs: list[dict]) -> tuple[float, float, float]:
  if all(r['episodes'] is not None for r in runs):
    return seed_stats([r['episodes'] for r in runs])
  return _summary_stats(runs)


def paired_difference(runs_a: list[dict], runs_b: list[dict]):
  """(mean, ci95, paired) of accuracy(a) - accuracy(b) over the seeds both have."""
  by_seed_a = {int(r['labels']['seed']): r for r in runs_a}
  by_seed_b = {int(r['labels']['seed']): r for r in runs_b}
  seeds = sorted(set(by_seed_a) & set(by_seed_b))
  if not seeds:
    return float('nan'), float('nan'), False
  pa, pb = [by_seed_a[s] for s in seeds], [by_seed_b[s] for s in seeds]
  if all(r['episodes'] is not None for r in pa + pb) and all(
      a['episodes'].shape == b['episodes'].shape for a, b in zip(pa, pb)):
    mean, ci, _ = seed_stats([a['episodes'] - b['episodes'] for a, b in zip(pa, pb)])
    return mean, ci, True
  ma, ca, _ = _summary_stats(pa)
  mb, cb, _ = _summary_stats(pb)
  return ma - mb, math.sqrt(ca ** 2 + cb ** 2), False


# --------------------------------------------------------------------------- tables


def aggregate(root: str) -> list[dict]:
  """One row per (task, method, shots, noise); see the module docstring for the statistics."""
  runs = find_runs(root)
  groups: dict[tuple, list[dict]] = defaultdict(list)
  for r in runs:
    groups[group_key(r['labels'])].append(r)
  rows = {}
  for key, members in groups.items():
    mean, ci, seed_std = group_stats(members)
    episodes = sorted({int(r['results'].get('num_episodes', 0)) for r in members})
    r1 = [r['results'].get('retrieval', {}).get('target_to_source', {}).get('R@1')
          for r in members]
    r1 = [v for v in r1 if v is not None]
    rows[key] = {
        'task': key[0], 'method': key[1], 'role': members[0]['labels'].get('role', ''),
        'shots': key[2], 'noise': key[3], 'seeds': len(members),
        'episodes_per_seed': '/'.join(str(e) for e in episodes),
        'accuracy_mean': mean, 'accuracy_ci95': ci, 'seed_std': seed_std,
        'best_baseline': '', 'diff_mean': float('nan'), 'diff_ci95': float('nan'),
        'diff_paired': '', 'r1_target_to_source': float(np.mean(r1)) if r1 else float('nan'),
    }
  # Best baseline per (task, shots, noise), and each method's difference to it.
  settings = defaultdict(list)
  for key in rows:
    settings[(key[0], key[2], key[3])].append(key)
  for (task, shots, noise), keys in settings.items():
    baselines = [k for k in keys if rows[k]['role'] == 'baseline']
    if not baselines:
      continue
    best = max(baselines, key=lambda k: rows[k]['accuracy_mean'])
    for k in keys:
      rows[k]['best_baseline'] = best[1]
      if k == best:
        continue
      mean, ci, paired = paired_difference(groups[k], groups[best])
      rows[k].update(diff_mean=mean, diff_ci95=ci, diff_paired='yes' if paired else 'no')
  role_order = {'ours': 0, 'baseline': 1, 'ablation': 2, 'oracle': 3}
  return sorted(rows.values(), key=lambda r: (r['task'], r['shots'], r['noise'],
                                              role_order.get(r['role'], 9), r['method']))


def _fmt(v, pct=True, digits=2):
  if isinstance(v, float):
    if math.isnan(v):
      return ''
    return f'{100 * v:.{digits}f}' if pct else f'{v:.{digits}f}'
  return str(v)


def write_csv(rows: list[dict], path: str) -> None:
  with open(path, 'w', newline='') as f:
    w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
    w.writeheader()
    for r in rows:
      w.writerow({k: (f'{r[k]:.6f}' if isinstance(r[k], float) and not math.isnan(r[k])
                      else ('' if isinstance(r[k], float) else r[k])) for k in CSV_FIELDS})


def markdown_table(rows: list[dict]) -> str:
  head = ('| task | method | role | shots | noise | seeds x episodes | accuracy % (95 % CI) | '
          'seed std | diff. to best baseline (95 % CI) | R@1 T->S % |')
  lines = [head, '|' + '---|' * 10]
  for r in rows:
    if r['diff_paired']:
      diff = (f"{100 * r['diff_mean']:+.2f} ± {100 * r['diff_ci95']:.2f} vs {r['best_baseline']}"
              + ('' if r['diff_paired'] == 'yes' else ' (unpaired)'))
    elif r['best_baseline'] == r['method']:
      diff = '(best baseline)'
    else:
      diff = ''
    lines.append(
        f"| {r['task']} | {r['method']} | {r['role']} | {r['shots']} | {100 * r['noise']:.0f} % | "
        f"{r['seeds']} x {r['episodes_per_seed']} | {100 * r['accuracy_mean']:.2f} ± "
        f"{100 * r['accuracy_ci95']:.2f} | {_fmt(r['seed_std'])} | {diff} | "
        f"{_fmt(r['r1_target_to_source'], digits=1)} |")
  return '\n'.join(lines)


def write_tables(root: str, rows: list[dict] | None = None) -> list[dict]:
  """Writes ROOT/results.csv and ROOT/results.md; returns the rows."""
  rows = aggregate(root) if rows is None else rows
  write_csv(rows, os.path.join(root, 'results.csv'))
  with open(os.path.join(root, 'results.md'), 'w') as f:
    f.write('# Results\n\nAccuracy on the fixed meta-test episodes (target modality, held-out '
            'classes), averaged over seeds; 95 % CI of the episode sampling error; seed std: '
            'spread of the per-seed means; differences are paired per episode (same seed, same '
            'episodes) against the best baseline of the same task, shots and noise.\n\n')
    f.write(markdown_table(rows) + '\n')
  return rows
