r"""Tiny config for tests: the default experiment shrunk to compile and run in seconds on CPU.

Width-8 encoders, z_dim 16, 2 tasks of 3-way 1-shot per step, one inner step, 6 steps with a
checkpoint and a meta-validation every 3, a handful of evaluation episodes (chunks of 4, so the
last chunk is padded), task and inner loops that compile fast. Input shapes stay the default's,
so the real data pipeline fits it too.

  python launch/run.py --config configs/test.py --workdir /tmp/meta_align_test
"""

from configs import default


def get_config():
  c = default.get_config()
  c.model.width = 8
  c.model.z_dim = 16
  c.task.ways = 3
  c.task.shots = 1
  c.task.queries = 2
  c.task.tasks_per_device = 2
  c.align.pairs = 6
  c.align.ways = 3
  c.meta.inner_steps = 1
  c.train.num_steps = 6
  c.train.log_every = 2
  c.train.checkpoint_every = 3
  c.train.eval_every = 3
  c.train.keep_checkpoints = 2
  c.train.val_episodes = 4
  c.eval.num_episodes = 6
  c.eval.batch_episodes = 4
  c.eval.ways = 3
  c.eval.shots = 1
  c.eval.queries = 2
  c.eval.inner_steps = 1
  c.data.target_train_shots = 2
  # Loops over tasks and inner steps compile several times faster than unrolled code on XLA:CPU;
  # these tests run a handful of steps, so compile time is what counts.
  c.execution.task_batching = 'map'
  c.execution.inner_loop = 'scan'
  return c
