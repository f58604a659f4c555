r"""Runs a named grid of experiments (tasks x methods x shots x noise x seeds) and tabulates it.

  python launch/sweep.py --grid cpu_core --root runs/sweep           # run, then tables + plots
  python launch/sweep.py --grid cpu_core --root runs/sweep --dry_run # list what would run
  python launch/sweep.py --root runs/sweep --report_only              # tables + plots only
  python launch/sweep.py --grid cpu_noise --root runs/sweep --seeds 0,1,2 --jobs 2 \
      --set train.num_steps=200 --set eval.num_episodes=600

Each run goes to ROOT/<task>/<method>/k<shots>_n<noise %>/seed<seed>/ (a normal work directory
plus sweep_run.json and episode_accuracies.npy) and runs in its own process; finished runs
(eval_results.json present) are skipped, so rerunning the command resumes a sweep. Afterwards
ROOT/results.csv, ROOT/results.md and ROOT/plots/*.png are (re)written from every finished run
under ROOT. Tasks, methods and grids: configs/sweeps/ (TASKS, METHODS, GRIDS); the runner:
meta_align_jax/lab/sweep.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from meta_align_jax.lab import plots, results, sweep  # noqa: E402

_GRID = flags.DEFINE_string('grid', None, f'Named grid: {sorted(sweep.GRIDS)}.')
_ROOT = flags.DEFINE_string('root', 'runs/sweep', 'Directory of the sweep (one subdir per run).')
_SEEDS = flags.DEFINE_list('seeds', None, "Seeds (default: the grid's, 0,1,2).")
_SET = flags.DEFINE_multi_string('set', [], 'Config override for every run: field=value.')
_JOBS = flags.DEFINE_integer('jobs', 1, 'Runs at a time (each its own process).')
_DRY_RUN = flags.DEFINE_boolean('dry_run', False, 'List the runs to do and stop.')
_REPORT_ONLY = flags.DEFINE_boolean('report_only', False, 'Only rewrite tables and plots.')
_EMBEDDINGS = flags.DEFINE_list(
    'embeddings', [], 'Run dirs (relative to --root) to draw PCA embedding plots for; default: '
    'seed 0 of meta_align and no_align of each task at 1 shot, no noise.')
_PLOTS = flags.DEFINE_boolean('plots', True, 'Draw plots.')


def _default_embedding_runs(root):
  out = []
  for task in sweep.TASKS:
    for method in ('meta_align', 'no_align'):
      d = os.path.join(root, task, method, 'k1_n0', 'seed0')
      if sweep.is_finished(d):
        out.append(d)
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  root = _ROOT.value
  if not _REPORT_ONLY.value:
    if not _GRID.value:
      raise app.UsageError('--grid is required (or --report_only).')
    try:
      specs = sweep.select_runs(_GRID.value, seeds=_SEEDS.value, sets=_SET.value)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
    status = sweep.run_grid(specs, root, jobs=_JOBS.value, dry_run=_DRY_RUN.value)
    if _DRY_RUN.value:
      for path in status['pending']:
        print('  would run', path)
      return
    print(f"done {len(status['done'])}, skipped {len(status['skipped'])}, "
          f"failed {len(status['failed'])}: {status['failed']}")
  if not os.path.isdir(root):
    raise app.UsageError(f'{root} does not exist.')
  if _PLOTS.value:
    embed = ([os.path.join(root, e) for e in _EMBEDDINGS.value] if _EMBEDDINGS.value
             else _default_embedding_runs(root))
    out = plots.write_all(root, embeddings_for=embed)
    rows = out['rows']
    for p in out['plots']:
      print('wrote', p)
  else:
    rows = results.write_tables(root)
  print(results.markdown_table(rows))
  print(f'wrote {os.path.join(root, "results.md")} and results.csv')


if __name__ == '__main__':
  app.run(main)
