"""The write-up numbers of issue 17 (part 7): docs/results/claim/<task>.json and its plots.

From the finished runs under ROOT (a study's runs/ folder, or any sweep root): runs are grouped by
(task, method, shots, noise); every seed was scored on the same fixed meta-test episodes by every
method (the seed fixes the split and the episodes), so methods are compared episode by episode.

Per (task, shots, noise) setting and method, on its PRIMARY protocol (config.eval.method, fixed
before the test run; eval_results.json 'method'):
  mean, ci95        seed-averaged accuracy and the episode-sampling 95 % CI
                    (`results.seed_stats`: 1.96 * sqrt(sum_s var_s / n_s) / S)
  per_seed          each seed's mean accuracy
  protocols         the same for both protocols when the run reported both (eval.report_both)
  diff              to the best non-oracle baseline (role 'baseline', highest mean in the
                    setting; chosen on the test means, which favours the baseline): mean and ci95
                    of the per-episode differences on the seeds both have, each seed's mean
                    difference and its sign (+1 / -1 / 0)
  diff_to_best_baseline_any_protocol
                    the same against the best baseline on EITHER protocol (its protocol picked
                    on the test means: the comparison most generous to the baselines)
  diff_by_protocol  each protocol the method reported, against that same best baseline
  gap_closed        (method - best baseline) / (oracle - best baseline); null when there is no
                    oracle or the oracle does not beat the baseline (the JSON says which oracle
                    setting was used: the same noise, else noise 0 at the same shots)
`chance` is 1 / ways. The plots draw accuracy against shots (no noise) and against noise (per
shots) for the methods run at two or more settings, the primary protocol solid and the other
dashed, with the chance line and the oracle's accuracy (a dashed line, or a star where it was
run at one setting only).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict

import numpy as np

from meta_align_jax import io
from meta_align_jax.lab import results

PROTOCOLS = ('finetune', 'proto')


def load_runs(root: str) -> list[dict]:
  """Finished runs (`results.find_runs`) with per-protocol episode accuracies {protocol: [E]}."""
  runs = []
  for r in results.find_runs(root):
    primary = r['results'].get('method', 'finetune')
    episodes = {} if r['episodes'] is None else {primary: r['episodes']}
    for protocol in PROTOCOLS:
      path = os.path.join(r['dir'], io.EPISODES_FILE.replace('.npy', f'_{protocol}.npy'))
      if protocol != primary and os.path.exists(path):
        episodes[protocol] = np.load(path).astype(np.float64)
    runs.append({**r, 'primary': primary, 'episodes': episodes})
  return runs


def _stats(per_seed: dict[int, np.ndarray]) -> dict:
  seeds = sorted(per_seed)
  mean, ci, seed_std = results.seed_stats([per_seed[s] for s in seeds])
  return {'mean': mean, 'ci95': ci, 'seed_std': None if math.isnan(seed_std) else seed_std,
          'per_seed': {str(s): float(np.mean(per_seed[s])) for s in seeds},
          'episodes_per_seed': sorted({int(per_seed[s].size) for s in seeds})}


def _primary(runs: list[dict]) -> tuple[str, dict[int, np.ndarray]]:
  protocols = {r['primary'] for r in runs}
  if len(protocols) != 1:
    raise ValueError(f'Seeds of one method were scored with different primary protocols '
                     f'{sorted(protocols)}: {[r["dir"] for r in runs]}.')
  protocol = protocols.pop()
  missing = [r['dir'] for r in runs if protocol not in r['episodes']]
  if missing:
    raise ValueError(f'No per-episode accuracies ({io.EPISODES_FILE}) in {missing}: the claim '
                     f'compares episode by episode; evaluate those runs again.')
  return protocol, {int(r['labels']['seed']): r['episodes'][protocol] for r in runs}


def _protocol_episodes(runs: list[dict]) -> dict[str, dict[int, np.ndarray]]:
  """{protocol: {seed: episodes}} for the protocols every seed of `runs` reported."""
  out = {}
  for protocol in PROTOCOLS:
    eps = {int(r['labels']['seed']): r['episodes'][protocol] for r in runs
           if protocol in r['episodes']}
    if len(eps) == len(runs):
      out[protocol] = eps
  return out


def paired(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> dict | None:
  """Paired per-episode difference a - b over the seeds both have."""
  seeds = sorted(set(a) & set(b))
  if not seeds:
    return None
  for s in seeds:
    if a[s].shape != b[s].shape:
      raise ValueError(f'Seed {s}: {a[s].size} vs {b[s].size} episodes; cannot pair them.')
  d = {s: a[s] - b[s] for s in seeds}
  out = _stats(d)
  out['sign_per_seed'] = {str(s): int(np.sign(np.mean(d[s]))) for s in seeds}
  out['wins_every_seed'] = all(np.mean(d[s]) > 0 for s in seeds)
  return out


def gap_closed(method: float, baseline: float, oracle: float | None) -> float | None:
  if oracle is None or not oracle > baseline:
    return None
  return (method - baseline) / (oracle - baseline)


def task_claim(runs: list[dict], task: str) -> dict:
  """The claim JSON of one task (module docstring)."""
  groups = defaultdict(list)
  for r in runs:
    if r['labels']['task'] == task:
      lab = r['labels']
      groups[(lab['method'], int(lab['shots']), float(lab['noise']))].append(r)
  if not groups:
    raise ValueError(f'No finished run of task {task!r}.')
  ways = {int(r['results']['ways']) for g in groups.values() for r in g}
  if len(ways) != 1:
    raise ValueError(f'Task {task!r} mixes {sorted(ways)}-way evaluations.')
  roles = {m: g[0]['labels'].get('role', '') for (m, _, _), g in groups.items()}
  primary = {k: _primary(g) for k, g in groups.items()}
  oracle_of = {}
  for (m, k, n) in groups:
    if roles[m] == 'oracle':
      oracle_of.setdefault((k, n), (m, k, n))
  settings = []
  for shots, noise in sorted({(k, n) for (_, k, n) in groups}):
    keys = [key for key in groups if key[1:] == (shots, noise)]
    stats = {key: _stats(primary[key][1]) for key in keys}
    baselines = [key for key in keys if roles[key[0]] == 'baseline']
    best = max(baselines, key=lambda key: stats[key]['mean']) if baselines else None
    # The same baselines on either protocol, whichever scored higher on the test means: the
    # comparison most generous to the baselines (their protocol chosen with test labels).
    by_protocol = {key: _protocol_episodes(groups[key]) for key in keys}
    any_proto = {(key, p): _stats(e)['mean'] for key in baselines
                 for p, e in by_protocol[key].items()}
    best_any = max(any_proto, key=any_proto.get) if any_proto else None
    okey = oracle_of.get((shots, noise)) or oracle_of.get((shots, 0.0))
    oracle_mean = _stats(primary[okey][1])['mean'] if okey else None
    methods = {}
    for key in sorted(keys):
      m = key[0]
      entry = {'role': roles[m], 'protocol': primary[key][0], **stats[key], 'protocols': {}}
      for protocol, eps in by_protocol[key].items():
        entry['protocols'][protocol] = {k: v for k, v in _stats(eps).items()
                                        if k in ('mean', 'ci95', 'per_seed')}
      if best is not None and key != best and roles[m] != 'oracle':
        entry['diff_to_best_baseline'] = paired(primary[key][1], primary[best][1])
        entry['gap_closed'] = gap_closed(stats[key]['mean'], stats[best]['mean'], oracle_mean)
      if best_any is not None and key != best_any[0] and roles[m] != 'oracle':
        best_eps = by_protocol[best_any[0]][best_any[1]]
        entry['diff_to_best_baseline_any_protocol'] = paired(primary[key][1], best_eps)
        entry['diff_by_protocol'] = {p: paired(eps, best_eps) for p, eps in
                                     by_protocol[key].items()}
      methods[m] = entry
    settings.append({
        'shots': shots, 'noise': noise,
        'best_baseline': best[0] if best else None,
        'best_baseline_any_protocol': ({'method': best_any[0][0], 'protocol': best_any[1],
                                        'mean': any_proto[best_any]} if best_any else None),
        'oracle': ({'method': okey[0], 'noise': okey[2], 'mean': oracle_mean} if okey else None),
        'methods': methods})
  w = ways.pop()
  return {'task': task, 'ways': w, 'chance': 1.0 / w, 'settings': settings}


def plot_task(claim: dict, out_dir: str) -> list[str]:
  """accuracy vs shots (noise 0) and vs noise (one figure per shots), chance + oracle lines."""
  from meta_align_jax.lab import plots  # pylint: disable=g-import-not-at-top  (matplotlib)
  plt = plots._plt()  # pylint: disable=protected-access
  written = []
  rows = [(s['shots'], s['noise'], m, e) for s in claim['settings']
          for m, e in s['methods'].items()]
  views = [('shots', {'noise': 0.0}, 'shots')]
  views += [('noise', {'shots': k}, f'noise_k{k}') for k in sorted({r[0] for r in rows})]
  for x, fixed, name in views:
    sel = [r for r in rows if all((r[0] if k == 'shots' else r[1]) == v for k, v in fixed.items())]
    xs_all = sorted({r[0] if x == 'shots' else r[1] for r in sel})
    if len(xs_all) < 2:
      continue
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method in sorted({r[2] for r in sel}):
      mine = sorted(((r[0] if x == 'shots' else r[1]), r[3]) for r in sel if r[2] == method)
      if mine[0][1]['role'] == 'oracle' or len(mine) < 2:   # a curve needs two settings
        continue
      primary = mine[0][1]['protocol']
      for protocol in (primary,) + tuple(p for p in PROTOCOLS if p != primary):
        pts = [(v, e['protocols'][protocol]) for v, e in mine if protocol in e['protocols']]
        if len(pts) < 2:
          continue
        line = ax.errorbar([100 * v if x == 'noise' else v for v, _ in pts],
                           [100 * p['mean'] for _, p in pts], yerr=[100 * p['ci95'] for _, p in pts],
                           marker='o', capsize=3, linestyle='-' if protocol == primary else '--',
                           label=f'{method} ({protocol}{", primary" if protocol == primary else ""})')
        if protocol == primary:
          color = line[0].get_color()
        else:
          for artist in (line[0], *line[1], *line[2]):
            artist.set_color(color)
    oracle, clean = {}, False
    for s in claim['settings']:
      if s['oracle'] and all(s[k] == v for k, v in fixed.items()):
        oracle[s['shots'] if x == 'shots' else s['noise']] = s['oracle']['mean']
        clean |= s['oracle']['noise'] != s['noise']
    if oracle:
      ox = sorted(oracle)
      ax.plot([100 * v if x == 'noise' else v for v in ox], [100 * oracle[v] for v in ox],
              'k--' if len(ox) > 1 else 'k*',
              label='oracle (noise 0)' if clean else 'oracle')
    ax.axhline(100 * claim['chance'], color='grey', linestyle=':', label='chance')
    plots.accuracy_axes(ax, x, f'{claim["task"]}: accuracy vs {x} '
                        + ', '.join(f'{k}={v}' for k, v in fixed.items()),
                        title_size=9, legend_size=6)
    written.append(plots.save(fig, os.path.join(out_dir, f'{claim["task"]}_{name}.png')))
  return written


def write_claim(root: str, out_dir: str, *, plots: bool = True) -> list[str]:
  """Writes OUT/<task>.json (and OUT/<task>_*.png) for every task with finished runs under ROOT."""
  runs = load_runs(root)
  if not runs:
    raise ValueError(f'No finished run under {root}.')
  os.makedirs(out_dir, exist_ok=True)
  written = []
  for task in sorted({r['labels']['task'] for r in runs}):
    claim = task_claim(runs, task)
    path = os.path.join(out_dir, f'{task}.json')
    io.write_atomic(path, json.dumps(claim, indent=1) + '\n')
    written.append(path)
    if plots:
      written += plot_task(claim, out_dir)
  return written
