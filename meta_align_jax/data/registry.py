"""Registry of the TFDS builders the data pipeline can load, keyed by `config.data.*_dataset`.

Each builder module in `meta_align_jax.data.builders` registers its class at import time;
`meta_align_jax.data.loading` imports that package before looking a name up.
"""

_BUILDERS = {}


def register(name, cls):
  _BUILDERS[name] = cls
  return cls


def get(name):
  if name not in _BUILDERS:
    raise ValueError(f"config.data.*_dataset={name!r} is not a known dataset; known: {sorted(_BUILDERS)}")
  return _BUILDERS[name]


def names():
  return sorted(_BUILDERS)
