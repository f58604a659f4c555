r"""Command line entry point: parses flags and calls the library. The only file with flags.

  python launch/run.py                       # configs/default.py into ./runs/default-<time>
  python launch/run.py --config configs/test.py --workdir /tmp/run --config.train.num_steps=20
  python launch/run.py --workdir /tmp/run --mode eval --eval_checkpoint best
  python launch/run.py --config configs/gpu_image_audio.py --exported b.npz   # no TensorFlow:
      # data from a bundle written by launch/export_data.py (meta_align_jax/feeds/exported.py)

Rerunning a command on the same --workdir resumes from its latest checkpoint. --mode eval without
--config evaluates with the config saved in the workdir. Exit status: 0 when done, 128 + signal
number when SIGTERM/SIGINT stopped training after saving a checkpoint.

Config fields: see configs/default.py (every field, with a comment); `--print_config` prints the
resolved config (after --config.<field>=... overrides) and exits. `--helpfull` lists every flag.
Help and --print_config import neither JAX's backend nor TensorFlow, so they answer at once.

Set config.execution.deterministic=True for bit-reproducible GPU runs (slower): XLA_FLAGS gets
--xla_gpu_deterministic_ops=true before JAX starts (meta_align_jax/determinism.py).
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Only what parsing flags needs is imported here: the library (JAX, clu, TensorFlow) is imported
# in main(), after --helpfull / --print_config have had their chance to answer quickly.
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               'configs', 'default.py')
_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG, 'Experiment config file (a python file with get_config()); every '
    'field is documented in configs/default.py. Override fields with --config.<group>.<field>='
    'value, e.g. --config.train.num_steps=100; --print_config shows the result.')
_PRINT_CONFIG = flags.DEFINE_bool('print_config', False,
                                  'Print the resolved config (with overrides) and exit.')
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
  from meta_align_jax import checkpoint  # pylint: disable=g-import-not-at-top
  if _MODE.value == 'eval' and not flags.FLAGS['config'].present:
    saved = checkpoint.load_config(workdir)
    if saved is None:
      raise app.UsageError(f'{workdir} has no {checkpoint.CONFIG_FILE}; pass --config.')
    return saved
  from meta_align_jax import lowres  # pylint: disable=g-import-not-at-top
  return lowres.apply(_CONFIG.value)   # the low-resource protocol's derived fields, if on


def _check_eval_workdir(config, workdir) -> bool:
  """--mode eval: the checkpoint exists (before any data is built); returns whether the workdir
  is writable (when not, results are printed and not written)."""
  from meta_align_jax import checkpoint  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(workdir):
    raise app.UsageError(f'--workdir {workdir} does not exist: train first (--mode train).')
  manager = checkpoint.make_manager(workdir, config, read_only=True)
  try:
    checkpoint.resolve_step(manager, _EVAL_CHECKPOINT.value)
  finally:
    manager.close()
  writable = _can_write(workdir)
  if not writable:
    logging.warning('%s is read-only: the results are printed, not written to it.', workdir)
  return writable


def _can_write(workdir) -> bool:
  """Tries it: os.access says yes to root even on an immutable or read-only directory."""
  try:
    with tempfile.NamedTemporaryFile(dir=workdir, prefix='.write-check-'):
      return True
  except OSError:
    return False


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _PRINT_CONFIG.value:
    print(_CONFIG.value)
    return
  workdir = _workdir()
  config = _config(workdir)
  # Before JAX starts its backend (nothing so far has computed anything): XLA reads XLA_FLAGS once.
  from meta_align_jax import determinism  # pylint: disable=g-import-not-at-top
  os.environ.update(determinism.deterministic_env(config))
  import jax  # pylint: disable=g-import-not-at-top
  from meta_align_jax import checkpoint, evaluate, train  # pylint: disable=g-import-not-at-top
  checkpoint.quiet_orbax_logs()
  if os.environ.get('JAX_COORDINATOR_ADDRESS'):
    jax.distributed.initialize()
  logging.info('Work directory: %s', os.path.abspath(workdir))
  data = None
  if _EXPORTED.value:
    from meta_align_jax.feeds import exported  # pylint: disable=g-import-not-at-top
    data = exported.ExportedData(_EXPORTED.value)
  if _MODE.value == 'eval':
    writable = _check_eval_workdir(config, workdir)
    results = evaluate.evaluate(config, workdir, checkpoint=_EVAL_CHECKPOINT.value, data=data,
                                write=writable)
    run = train.RunResult(step=0, num_steps=0, eval_results=results)
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
