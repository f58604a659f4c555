"""Makes clu's metric writers importable where TensorFlow is not installed (the GPU machines).

clu's `metric_writers` package imports its TensorFlow summary writer unconditionally. Without
TensorFlow, `install()` registers a stand-in for that one module before clu is imported, so that
`clu.metric_writers` (logging, multi and async writers, the interface) and `clu.periodic_actions`
import; the TensorBoard writer itself then raises when constructed, and `train.make_writer`
writes logs and metrics.jsonl only (`HAVE_TENSORFLOW`).
"""

from __future__ import annotations

import importlib.util
import sys
import types

from meta_align_jax import tf_env

# clu's writers import TensorFlow: its settings go in first (tf_env.py).
tf_env.set_defaults()


def _have_tensorflow() -> bool:
  try:
    return importlib.util.find_spec('tensorflow') is not None
  except (ImportError, ValueError):
    return False


HAVE_TENSORFLOW = _have_tensorflow()
_MODULE = 'clu.metric_writers.tf.summary_writer'


class _NoSummaryWriter:

  def __init__(self, *args, **kwargs):
    raise ImportError('TensorBoard event files need TensorFlow, which is not installed; metrics '
                      'are still written to the log and to WORKDIR/metrics.jsonl.')


def install() -> None:
  if HAVE_TENSORFLOW or _MODULE in sys.modules:
    return
  stub = types.ModuleType(_MODULE)
  stub.SummaryWriter = _NoSummaryWriter
  sys.modules[_MODULE] = stub


install()
