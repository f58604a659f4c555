r"""Paired per-episode difference between two groups of finished sweep runs.

  python launch/compare.py --root runs/sweep image_audio_c5/meta_align_evproto \
      image_audio_c5/target_only_evproto [--seeds 0] [--shots 1] [--noise 0]

  python launch/compare.py --workdirs runs/a_s0,runs/a_s1 runs/b_s0,runs/b_s1

Each argument is TASK/METHOD of a sweep, or with --workdirs a comma list of work directories of
`launch/run.py` (each evaluated: eval_results.json and episode_accuracies.npy of its last
evaluation; the seed comes from its config.json). The difference A - B is taken on the seeds
both have, episode by episode (same seed and evaluation settings -> same meta-test episodes),
with the statistics of `meta_align_jax.lab.results` (mean over seeds, 95 % CI from the episode
variance). The results table compares every method only to the best baseline of its task; this
compares any two.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from meta_align_jax.lab import results  # noqa: E402

_ROOT = flags.DEFINE_string('root', 'runs/sweep', 'Directory of the sweep.')
_SEEDS = flags.DEFINE_list('seeds', None, 'Only these seeds (default: all both groups have).')
_SHOTS = flags.DEFINE_integer('shots', 1, 'Shots of both groups.')
_NOISE = flags.DEFINE_float('noise', 0.0, 'Noise rate of both groups.')
_WORKDIRS = flags.DEFINE_bool('workdirs', False, 'The two arguments are comma lists of work '
                              'directories instead of TASK/METHOD of a sweep under --root.')


def _group(runs, name):
  task, _, method = name.partition('/')
  out = [r for r in runs if results.group_key(r['labels']) ==
         (task, method, _SHOTS.value, _NOISE.value)]
  if _SEEDS.value:
    out = [r for r in out if str(r['labels']['seed']) in _SEEDS.value]
  if not out:
    raise app.UsageError(f'No finished run of {name} (shots {_SHOTS.value}, noise '
                         f'{_NOISE.value}, seeds {_SEEDS.value or "any"}) under {_ROOT.value}.')
  return out


def main(argv):
  if len(argv) != 3:
    raise app.UsageError('Give two groups: TASK/METHOD TASK/METHOD.')
  if _WORKDIRS.value:
    try:
      a, b = ([results.read_workdir(d) for d in arg.split(',') if d] for arg in argv[1:])
    except FileNotFoundError as e:
      raise app.UsageError(str(e)) from e
    if _SEEDS.value:
      a, b = ([r for r in g if str(r['labels']['seed']) in _SEEDS.value] for g in (a, b))
    for name, group in zip(argv[1:], (a, b)):
      seeds = [r['labels']['seed'] for r in group]
      if len(set(seeds)) != len(seeds) or not seeds:
        raise app.UsageError(f'{name}: give one work directory per seed (seeds {seeds}).')
  else:
    runs = results.find_runs(_ROOT.value)
    a, b = _group(runs, argv[1]), _group(runs, argv[2])
  try:
    results.check_same_episodes(a, b)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  for name, group in ((argv[1], a), (argv[2], b)):
    mean, ci, _ = results.group_stats(group)
    seeds = sorted(int(r['labels']['seed']) for r in group)
    print(f'{name}: {100 * mean:.2f} +- {100 * ci:.2f} % (seeds {seeds})')
  mean, ci, paired = results.paired_difference(a, b)
  print(f'{argv[1]} - {argv[2]}: {100 * mean:+.2f} +- {100 * ci:.2f} points '
        f'({"paired per episode" if paired else "unpaired"})')


if __name__ == '__main__':
  app.run(main)
