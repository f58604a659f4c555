"""Tiny configs and fake models shared by the core tests (seconds on a 2-core CPU)."""

from configs import default


def override(c, **overrides):
  """Sets dotted fields, e.g. override(c, **{'task.ways': 5})."""
  for key, value in overrides.items():
    node = c
    *path, last = key.split('.')
    for p in path:
      node = node[p]
    node[last] = value
  return c


def tiny_config(**overrides):
  c = default.get_config()
  c.source.encoder, c.source.input_shape = 'conv4', (8, 8, 3)
  c.target.encoder, c.target.input_shape = 'temporal_conv', (6, 5)
  c.model.width, c.model.hidden, c.model.z_dim = 4, 8, 8
  c.task.ways, c.task.shots, c.task.queries, c.task.tasks_per_device = 3, 1, 2, 2
  c.align.pairs, c.align.ways = 6, 3
  c.meta.inner_steps = 2
  c.eval.ways, c.eval.shots, c.eval.queries = 3, 1, 2
  c.execution.parallel = 'jit'
  # Compact programs compile fastest on CPU; the strategy tests sweep the others.
  c.execution.task_batching, c.execution.inner_loop = 'vmap', 'scan'
  return override(c, **overrides)
