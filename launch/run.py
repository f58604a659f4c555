r"""Command line entry point: parses flags and calls the library. The only file with flags.

  python launch/run.py                       # configs/default.py into ./runs/default-<time>
  python launch/run.py --config configs/test.py --workdir /tmp/run --config.train.num_steps=20
  python launch/run.py --workdir /tmp/run --mode eval --eval_checkpoint best
  python launch/run.py --config configs/gpu_image_audio.py --exported b.npz   # no TensorFlow:
      # data from a bundle written by launch/export_data.py (meta_align_jax/feeds/exported.py)

Rerunning a command on the same --workdir resumes from its latest checkpoint. --mode eval without
--config evaluates with the config saved in the workdir. Exit status: 0 when done, 128 + signal
number when SIGTERM/SIGINT stopped training after saving a checkpoint.
"""

import logging as std_logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
import jax  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from meta_align_jax import checkpoint, evaluate, train  # noqa: E402

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               'configs', 'default.py')
_CONFIG = config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG, 'Experiment config file.')
_WORKDIR = flags.DEFINE_string('workdir', None,
                                'Work directory (default: a fresh ./runs/<config>-<time>).')
_MODE = flags.DEFINE_enum('mode', 'train_and_eval', ['train', 'eval', 'train_and_eval'],
                          'What to run.')
_EXPORTED = flags.DEFINE_string(
    'exported', None, 'Read the data from this bundle (launch/export_data.py) instead of TFDS; '
    'needs no TensorFlow.')
_EVAL_CHECKPOINT = flags.DEFINE_string(
    'eval_checkpoint', 'best', 'Checkpoint to evaluate: latest, best (meta-validation) or a step.')


def _workdir() -> str:
  if _WORKDIR.value:
    return _WORKDIR.value
  if _MODE.value == 'eval':
    raise app.UsageError('--mode eval needs --workdir.')
  stem = os.path.splitext(os.path.basename(flags.FLAGS['config'].config_filename))[0]
  return os.path.join('runs', f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")


def _config(workdir):
  if _MODE.value == 'eval' and not flags.FLAGS['config'].present:
    saved = checkpoint.load_config(workdir)
    if saved is None:
      raise app.UsageError(f'{workdir} has no {checkpoint.CONFIG_FILE}; pass --config.')
    return saved
  return _CONFIG.value


class _QuietLibraries:
  """Log filter: Orbax reports every step of every save at INFO; keep its warnings only."""

  def filter(self, record) -> bool:
    return (record.levelno >= std_logging.WARNING
            or f'{os.sep}orbax{os.sep}' not in record.pathname)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_logger().addFilter(_QuietLibraries())
  if os.environ.get('JAX_COORDINATOR_ADDRESS'):
    jax.distributed.initialize()
  workdir = _workdir()
  config = _config(workdir)
  logging.info('Work directory: %s', os.path.abspath(workdir))
  data = None
  if _EXPORTED.value:
    from meta_align_jax.feeds import exported  # pylint: disable=g-import-not-at-top
    data = exported.ExportedData(_EXPORTED.value)
  if _MODE.value == 'eval':
    run = train.RunResult(step=0, num_steps=0, eval_results=evaluate.evaluate(
        config, workdir, checkpoint=_EVAL_CHECKPOINT.value, data=data))
  elif _MODE.value == 'train':
    run = train.train(config, workdir, data=data)
  else:
    run = train.train_and_evaluate(config, workdir, checkpoint=_EVAL_CHECKPOINT.value, data=data)
  if jax.process_index() == 0:
    print(f'\nWrote {os.path.abspath(workdir)}')
    if run.eval_results is not None:
      print(evaluate.format_results(run.eval_results))
  if run.stopped_by is not None:
    print(f'Stopped by signal {run.stopped_by} at step {run.step} after saving a checkpoint; run '
          'the same command again to resume.')
    sys.exit(128 + run.stopped_by)


if __name__ == '__main__':
  app.run(main)
