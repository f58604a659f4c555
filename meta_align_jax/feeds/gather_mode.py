"""Where training inputs are gathered, `config.data.gather`: its check and its resolution.

  'host'    the host gathers (tf.data), every backend;
  'device'  the device gathers (`feeds.device_gather`), every backend (on CPU only useful for
            testing);
  'auto'    'device' on an accelerator when the source and target arrays together take at most
            `config.data.device_gather_max_gib` GiB, else 'host'.

Imports JAX only: `validation.check_config` calls `check_config` before anything is built.
"""

from __future__ import annotations

import jax

GATHER_MODES = ('auto', 'host', 'device')
DEFAULT_MAX_GIB = 4.0


def check_config(config) -> None:
  """Raises ValueError naming `config.data.gather` / `device_gather_max_gib` when invalid."""
  data = config.get('data')
  if data is None:
    return
  mode = data.get('gather', 'host')
  if mode not in GATHER_MODES:
    raise ValueError(f'config.data.gather={mode!r}: use one of {GATHER_MODES} (host: tf.data '
                     f'gathers the examples; device: the accelerator gathers them by index).')
  limit = data.get('device_gather_max_gib', DEFAULT_MAX_GIB)
  if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0:
    raise ValueError(f'config.data.device_gather_max_gib={limit!r}: use a number of GiB >= 0.')


def resolve(config, nbytes: int, backend: str | None = None) -> str:
  """'host' or 'device' for a run whose source + target arrays take `nbytes` bytes."""
  check_config(config)
  mode = config.data.get('gather', 'host')
  if mode != 'auto':
    return mode
  backend = backend or jax.default_backend()
  limit = float(config.data.get('device_gather_max_gib', DEFAULT_MAX_GIB)) * 2**30
  return 'device' if backend != 'cpu' and nbytes <= limit else 'host'
