"""TensorFlow and TFDS, imported quietly and configured for input pipelines only.

Only `meta_align_jax.data` imports TensorFlow. TF reads its C++ logging settings when it is
imported, so they are set (as defaults the user can override, `meta_align_jax/tf_env.py`) before the import: warnings and
above only, and oneDNN's float re-association off so that image resizing is bit-reproducible
(and its start-up notice is not printed). `configure()` hides accelerators from TF (JAX owns
them) and turns TFDS progress bars off; it runs once, on first use, not at import.
"""

from __future__ import annotations

import functools

from meta_align_jax import tf_env

tf_env.set_defaults()   # the same settings whichever of data/ and clu imports TensorFlow first

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

__all__ = ['tf', 'tfds', 'configure']


@functools.cache
def configure() -> None:
  """Keeps TF off GPUs/TPUs and TFDS quiet and offline. Idempotent."""
  try:
    tf.config.set_visible_devices([], 'GPU')
    tf.config.set_visible_devices([], 'TPU')
  except (RuntimeError, ValueError):
    pass  # TF already initialised its devices, or has no such device type: nothing to hide.
  tfds.display_progress_bar(False)
  # TFDS 4.9 ships with GCS access disabled; make sure nothing turned it back on, so that
  # preparing a builder never reaches for the network or asks for credentials.
  from tensorflow_datasets.core.utils import gcs_utils
  gcs_utils._is_gcs_disabled = True  # pylint: disable=protected-access
