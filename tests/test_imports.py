"""The package's import graph, read from the source with `ast`: no circles, `data/` apart from the
training stack, the lab apart from the core, and a core that imports without TensorFlow.

Every `import` statement counts, also those inside functions (an import deferred to break a
circle is still a circle). Implicit imports of parent packages (importing `a.b.c` runs `a/__init__`
and `a/b/__init__`) do not: a package's `__init__` re-exporting its modules is not a circle.
"""

import ast
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'meta_align_jax'

# Circles outside this change's files, each removed by the refactor that owns its modules. Each
# entry must still be a circle (the test fails on a stale one: delete it then).
KNOWN_CIRCLES: set = set()


def package_modules(root: str = os.path.join(REPO, PACKAGE)) -> dict[str, str]:
  """Module name -> file, for every .py file of the package (`pkg/__init__.py` -> 'pkg')."""
  out = {}
  base = os.path.dirname(root)
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith(('.', '__pycache__')))
    for name in sorted(filenames):
      if not name.endswith('.py'):
        continue
      rel = os.path.relpath(os.path.join(dirpath, name), base)[:-3].split(os.sep)
      if rel[-1] == '__init__':
        rel = rel[:-1]
      out['.'.join(rel)] = os.path.join(dirpath, name)
  return out


def _resolve(name: str, modules) -> str | None:
  """The longest prefix of dotted `name` that is a module of the package."""
  parts = name.split('.')
  for i in range(len(parts), 0, -1):
    candidate = '.'.join(parts[:i])
    if candidate in modules:
      return candidate
  return None


def imports_of(module: str, path: str, modules) -> set[str]:
  """The package modules that `module` imports (anywhere in the file)."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  is_package = os.path.basename(path) == '__init__.py'
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:   # relative: from the module's package, up level - 1
        parent = module.split('.') if is_package else module.split('.')[:-1]
        parent = parent[:len(parent) - (node.level - 1)]
        base = '.'.join(parent + ([base] if base else []))
      # `from a import b` imports module a.b when there is one, else names of a.
      names = [f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base for a in node.names]
    else:
      continue
    for name in names:
      target = _resolve(name, modules) if name.split('.')[0] == PACKAGE else None
      if target is not None and target != module:
        out.add(target)
  return out


def import_graph() -> dict[str, set[str]]:
  modules = package_modules()
  return {m: imports_of(m, p, modules) for m, p in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan), each sorted."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


@pytest.fixture(scope='module')
def graph():
  return import_graph()


def test_the_graph_is_read_from_the_source(graph):
  # Module-level, deferred, `from pkg import module` and relative imports are all edges.
  assert 'meta_align_jax.train_step' in graph['meta_align_jax.train']
  assert 'meta_align_jax.data.loading' in graph['meta_align_jax.data.episodes']
  assert 'meta_align_jax.data' in graph['meta_align_jax.feeds.pipeline']   # deferred import
  modules = {'p': '', 'p.a': '', 'p.b': ''}
  assert _resolve('p.a.f', modules) == 'p.a' and _resolve('q', modules) is None
  # The circle finder finds circles of any length, and only those.
  assert circles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
  assert circles({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) == []


def test_no_module_imports_one_that_imports_it_back(graph):
  found = {frozenset(c) for c in circles(graph)}
  new = [sorted(c) for c in found - KNOWN_CIRCLES]
  assert not new, f'Import circles (each module list imports itself through the others): {new}'
  stale = [sorted(c) for c in KNOWN_CIRCLES - found]
  assert not stale, f'KNOWN_CIRCLES lists circles that are gone; delete them: {stale}'


def test_data_imports_nothing_outside_data_and_io(graph):
  allowed = lambda m: (m in ('meta_align_jax.io', 'meta_align_jax.modalities',
                                  'meta_align_jax.lowres', 'meta_align_jax.tf_env',
                                  'meta_align_jax.registry')
                       or m.startswith('meta_align_jax.data'))
  bad = {m: sorted(t for t in targets if not allowed(t))
         for m, targets in graph.items() if m.startswith('meta_align_jax.data')}
  bad = {m: t for m, t in bad.items() if t}
  assert not bad, f'The data package imports the training stack: {bad}'
  assert any(m.startswith('meta_align_jax.data.') for m in graph)   # the walk saw the package


def test_io_and_the_lab_stay_apart(graph):
  assert graph['meta_align_jax.io'] == set(), 'io.py imports nothing of the package'
  assert graph['meta_align_jax.modalities'] == set()
  assert graph['meta_align_jax.lowres'] == set()
  assert graph['meta_align_jax.tf_env'] == set()
  assert graph['meta_align_jax.registry'] == set()
  lab_users = sorted(m for m, targets in graph.items() if not m.startswith('meta_align_jax.lab')
                     and any(t.startswith('meta_align_jax.lab') for t in targets))
  assert not lab_users, f'Only the lab imports the lab: {lab_users}'


def _core_modules(graph) -> list[str]:
  """The algorithm (models, losses, meta-learners, the step, fast paths) and what serves it
  without TensorFlow (feeds, io, config checks)."""
  prefixes = ('meta_align_jax.models', 'meta_align_jax.meta', 'meta_align_jax.fast',
              'meta_align_jax.feeds')
  singles = ('meta_align_jax', 'meta_align_jax.losses', 'meta_align_jax.train_step',
             'meta_align_jax.validation', 'meta_align_jax.parallel', 'meta_align_jax.io',
             'meta_align_jax.registry', 'meta_align_jax.evaluate')
  return sorted(m for m in graph if m in singles or m.startswith(prefixes))


def test_core_imports_without_tensorflow_tfds_or_librosa(graph):
  modules = _core_modules(graph)
  assert 'meta_align_jax.train_step' in modules and 'meta_align_jax.feeds.exported' in modules
  script = textwrap.dedent(f"""
      import importlib, sys
      for name in {modules!r}:
        importlib.import_module(name)
      bad = sorted(k for k in sys.modules
                   if k.split('.')[0] in ('tensorflow', 'tensorflow_datasets', 'librosa'))
      print('IMPORTED', bad)
      assert not bad, bad
  """)
  proc = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu'), timeout=300)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert 'IMPORTED []' in proc.stdout


def test_tensorflow_gets_its_settings_whichever_part_imports_it_first():
  """The training loop imports TensorFlow through clu before the data package does: the settings
  of tf_env.py (oneDNN re-association off, for bit-reproducible data) must already hold then."""
  code = ('import os, sys\n'
          'from meta_align_jax import train\n'
          'assert "tensorflow" in sys.modules, "clu no longer imports TensorFlow: test moot"\n'
          'print(os.environ["TF_ENABLE_ONEDNN_OPTS"])\n')
  env = {k: v for k, v in os.environ.items() if not k.startswith('TF_')}
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                       cwd=REPO, check=True)
  assert out.stdout.split() == ['0']
  assert 'oneDNN custom operations are on' not in out.stderr
