r"""Conv-4 speed target (issue 7): width 64 at 84x84, 5-way 1-shot + 5 queries, 5 inner SGD steps,
bfloat16, full-network adaptation (Reptile adapts the whole encoder and head on the task's 30
images). Alignment is off, so one task = one few-shot task. The model is the one the target was
set with, `../shared/bench/probe_task_parallelism.py`'s Conv-4 (3x3 conv -> ReLU -> 2x2 max-pool,
no normalisation; 176 tasks/s vmap, 366 lax.map on an H100): hence `model.norm='none'`.
`--config.model.norm=group` gives the GroupNorm Conv-4 of the other configs.

  python bench/train_step.py --config configs/bench_conv4.py
"""

from configs import default


def get_config():
  c = default.get_config()
  c.source.modality, c.source.encoder, c.source.input_shape = 'image', 'conv4', (84, 84, 3)
  # Unused while alignment is off; a small valid target tower.
  c.target.modality, c.target.encoder, c.target.input_shape = 'audio', 'temporal_conv', (8, 8)
  c.model.width = 64
  c.model.z_dim = 64
  c.model.compute_dtype = 'bfloat16'
  c.model.norm = 'none'
  c.task.ways, c.task.shots, c.task.queries = 5, 1, 5
  c.task.tasks_per_device = 64
  c.align.enabled = False
  c.meta.learner = 'reptile'
  c.meta.inner_steps = 5
  c.meta.inner_opt = 'sgd'
  c.meta.adapt = 'all'
  c.eval.ways, c.eval.shots, c.eval.queries = 5, 1, 5
  # Fastest full-network strategy measured on H100/H200 (docs/SPEED.md): tasks vmapped with the
  # per-task convolutions as Pallas implicit GEMMs (`auto` on GPU; 1.7x patch GEMMs, 3.4x
  # lax.map over tasks with XLA's convolutions). The 5 inner steps unrolled: 1.07x the scanned
  # loop, compiles in ~10 s.
  c.execution.task_batching = 'vmap'
  c.execution.inner_loop = 'unroll'
  c.execution.conv = 'auto'
  return c
