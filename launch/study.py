r"""A study on an accelerator without TensorFlow: export here, run there (meta_align_jax/lab/study.py).

  # 1. here (TensorFlow, datasets): resolved configs + shared data bundles for every run
  python launch/study.py export --grid study_lowres --study runs/study
  python launch/study.py export --grid study_lowres --study runs/study --tasks image_audio \
      --methods lr_meta_align,lr_target_only --seeds 0 --set train.num_steps=300
  # 2. on the GPU machine (numpy + JAX): every unfinished run, resumable, within a time budget
  python launch/study.py run --study runs/study --budget_s 540 --slots 1
  python launch/study.py collect --study runs/study --dest $OUT        # result files only
  # 3. the write-up numbers and plots (meta_align_jax/lab/claim.py)
  python launch/study.py claim --study runs/study --out docs/results/claim
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_STUDY = flags.DEFINE_string('study', 'runs/study', 'The study folder.')
_GRID = flags.DEFINE_string('grid', None, 'export: a grid of configs/sweeps/grids.py.')
_TASKS = flags.DEFINE_list('tasks', None, "export: only these of the grid's tasks.")
_METHODS = flags.DEFINE_list('methods', None, "export: only these of the grid's methods.")
_SEEDS = flags.DEFINE_list('seeds', None, "export: seeds (default: the grid's).")
_SHOTS = flags.DEFINE_list('shots', None, "export: only these of the grid's shots.")
_NOISE = flags.DEFINE_list('noise', None, "export: only these of the grid's noise rates.")
_SET = flags.DEFINE_multi_string('set', [], 'export: config override of every run: field=value.')
_BUDGET = flags.DEFINE_float('budget_s', 0, 'run: stop (resumably) after this many seconds; 0: none.')
_SLOTS = flags.DEFINE_integer('slots', 1, 'run: runs at once, one GPU each (see --slots_per_gpu).')
_SLOTS_PER_GPU = flags.DEFINE_integer('slots_per_gpu', 1, 'run: runs sharing one GPU.')
_ONLY = flags.DEFINE_string('only', '', 'run: only runs whose path contains this.')
_DEST = flags.DEFINE_string('dest', None, 'collect: where to copy the result files.')
_OUT = flags.DEFINE_string('out', 'docs/results/claim', 'claim: output folder.')


def main(argv):
  if len(argv) != 2 or argv[1] not in ('export', 'run', 'collect', 'claim'):
    raise app.UsageError('Usage: launch/study.py export|run|collect|claim [flags]')
  from meta_align_jax.lab import study  # pylint: disable=g-import-not-at-top
  cmd = argv[1]
  if cmd == 'export':
    from meta_align_jax.lab import sweep  # pylint: disable=g-import-not-at-top
    if not _GRID.value:
      raise app.UsageError('export needs --grid.')
    try:
      specs = sweep.select_runs(_GRID.value, seeds=_SEEDS.value, sets=_SET.value,
                                tasks=_TASKS.value, methods=_METHODS.value,
                                shots=_SHOTS.value, noise=_NOISE.value)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
    study.export_study(specs, _STUDY.value, grid=_GRID.value)
  elif cmd == 'run':
    status = study.run_study(_STUDY.value, budget_s=_BUDGET.value, slots=_SLOTS.value,
                             slots_per_gpu=_SLOTS_PER_GPU.value, only=_ONLY.value)
    if status['failed']:
      sys.exit(1)
  elif cmd == 'collect':
    if not _DEST.value:
      raise app.UsageError('collect needs --dest.')
    print(f'{study.collect(_STUDY.value, _DEST.value)} files copied to {_DEST.value}.')
  else:
    from meta_align_jax.lab import claim  # pylint: disable=g-import-not-at-top
    for path in claim.write_claim(os.path.join(_STUDY.value, 'runs'), _OUT.value):
      print(path)


if __name__ == '__main__':
  app.run(main)
