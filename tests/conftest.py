"""Session-wide settings that make the tests' XLA compilations cheap, for every test and every
subprocess a test starts (CLI, pmap, README snippet): set in this process and in the environment.

- One persistent compilation cache under `.pytest_cache`: most tests compile the same tiny
  programs (the test config's train and evaluation steps, the tiny models); the first to compile
  one writes it, later tests, the other xdist worker and the subprocesses load it; reruns start
  warm. JAX decides once per process, at its first compilation, whether it uses the cache, so it
  is switched on here, before anything compiles, rather than by the modules that need it.
- `jax_disable_most_optimizations`: XLA:CPU compiles the tiny steps about twice as fast (a maml
  train step: 29 s -> 16 s of CPU) and runs them a little slower; the numbers agree (equivalence
  tests compare programs compiled alike; the learning tests still learn).
"""

import os

import jax
import pytest

_ENV = {'JAX_DISABLE_MOST_OPTIMIZATIONS': '1',
        'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
        'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0'}


def _cache_dir(config):
  cache = getattr(config, 'cache', None)   # None under `-p no:cacheprovider`
  return str(cache.mkdir('jax_compilation_cache')) if cache is not None else None


def pytest_configure(config):
  jax.config.update('jax_disable_most_optimizations', True)
  os.environ.update(_ENV)
  path = _cache_dir(config)
  if path:
    jax.config.update('jax_compilation_cache_dir', path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
    os.environ['JAX_COMPILATION_CACHE_DIR'] = path


@pytest.fixture(scope='session')
def compilation_cache_dir(pytestconfig):
  """The persistent compilation cache's directory (None without pytest's cache provider)."""
  return _cache_dir(pytestconfig)
