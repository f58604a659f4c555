"""TensorFlow's process settings, in one place, set before anything imports TensorFlow.

TensorFlow reads them once, when it is imported, and two parts of the library import it: the data
package (`data/tfsetup.py`) and clu's metric writers (`clu_compat.py`, imported by the training
loop, often first). Both call `set_defaults()` before that import, so the settings hold whichever
comes first: oneDNN's float re-association off, which keeps TensorFlow's CPU ops (image resizing
while a dataset is built) bit-reproducible, and C++ logging at warnings and above (where JAX was
imported first, its own default, INFO off, holds). Values set in the environment beforehand win.
Imports nothing of the package and not TensorFlow.
"""

import os

TF_ENV = {'TF_CPP_MIN_LOG_LEVEL': '2', 'TF_ENABLE_ONEDNN_OPTS': '0'}


def set_defaults() -> None:
  for name, value in TF_ENV.items():
    os.environ.setdefault(name, value)
