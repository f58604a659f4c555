"""`config.execution.deterministic`: bit-reproducible runs on GPU, at a speed cost.

XLA picks GPU kernels by autotuning and some of them (reductions and scatters with atomics) add
in a varying order, so two runs of one seed can differ in the last bits, and training amplifies
that (a retrained seed moved by up to 5.9 points). `deterministic=True` sets
XLA_FLAGS=--xla_gpu_deterministic_ops=true: deterministic kernels only and no autotuning, so a
seed gives bit-identical results on one GPU model and software stack (not across them). XLA reads
the flag when its backend starts, so it must be in the environment before the first JAX
computation: launch/run.py sets it right after parsing the config; library users call
`os.environ.update(deterministic_env(config))` first, or `check_execution_env` (run by the
training loop's checks) sets it when JAX has not started yet and refuses the config when it has.
CPU runs are deterministic either way.
"""

from __future__ import annotations

import os

DETERMINISTIC_XLA_FLAG = '--xla_gpu_deterministic_ops=true'


def deterministic_env(config) -> dict[str, str]:
  """Environment variables `config.execution.deterministic` needs before JAX starts ({} if off).

  XLA_FLAGS gets --xla_gpu_deterministic_ops=true: deterministic GPU kernels (no atomics in
  reductions and scatters) and no autotuning, so a seed gives bit-identical results on one GPU
  model and software stack; TF_DETERMINISTIC_OPS makes the tf.data side deterministic too.
  """
  if not config.execution.get('deterministic', False):
    return {}
  flags = os.environ.get('XLA_FLAGS', '')
  if DETERMINISTIC_XLA_FLAG.split('=')[0] not in flags:
    flags = f'{flags} {DETERMINISTIC_XLA_FLAG}'.strip()
  return {'XLA_FLAGS': flags, 'TF_DETERMINISTIC_OPS': '1'}


def check_execution_env(config) -> None:
  """Sets `deterministic_env` if JAX has not started; refuses if it started without it."""
  wanted = deterministic_env(config)
  if not wanted or DETERMINISTIC_XLA_FLAG in os.environ.get('XLA_FLAGS', ''):
    return
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  if xla_bridge.backends_are_initialized():
    raise ValueError(
        'config.execution.deterministic=True needs XLA_FLAGS to contain '
        f'{DETERMINISTIC_XLA_FLAG} before JAX starts its backend, which has already started in '
        'this process. Use launch/run.py (it sets it), or set the environment variable (or call '
        'os.environ.update(train.deterministic_env(config))) before the first JAX computation.')
  os.environ.update(wanted)
