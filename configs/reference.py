r"""The reference's model and settings (peter-yh-wu/xmodal; `../shared/bench/ref_torch_meta_align.py`).

Source = text: 1-layer LSTM over 768-d token features (sequence 64, hidden 256), max-pooled,
projected to Z (128). Target = images: ResNet-18 (width 64) at 224x224 (84x84 with
`--config.target.input_shape='(84, 84, 3)'`), projected to Z. Head: ReLU -> Linear, as the
reference's classifier. Each task: 3-way 5-shot source task (15 examples: shots=4 + queries=1,
Reptile adapts on support+query together) with 9 inner Adam(b1=0, b2=.999, lr 1e-4) steps on
minibatches of 8 cycling over the task; alignment task of 15 weak pairs (3 ways x 5) with 9
Reptile inner steps on minibatches of 4 and the prototype triplet loss (margin 0.5); outer Adam
at 1e-4 without clipping. This is one meta-iteration of the reference, per task.

Differences from the reference, kept on purpose: GroupNorm instead of BatchNorm (stateless under
per-task adaptation, see models/layers.py); the float token features go through a Dense(768->256)
before the LSTM (the reference's LSTM takes the 768-d input directly; +~1 % FLOPs); the image side
has one projection (512->128) where the reference has fc (512->128) and align Linear(128, 128);
the reference applies its two Reptile updates (source, alignment) one after the other and carries
inner-Adam state across meta-iterations, here both task gradients are summed into one outer step
and each task's inner Adam starts fresh; many tasks run per step (`task.tasks_per_device`)
instead of one.

A benchmark config: drive it with `meta_align_jax.random_batch` (`bench/train_step.py`). The
real Yummly-28K builder gives token ids, so training on it sets `source.input_shape=(L,)`.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.source.modality, c.source.encoder, c.source.input_shape = 'text', 'lstm', (64, 768)
  c.target.modality, c.target.encoder, c.target.input_shape = 'image', 'resnet18', (224, 224, 3)

  c.model.width = 64
  c.model.hidden = 256
  c.model.z_dim = 128
  c.model.text_layers = 1
  c.model.text_pool = 'max'
  c.model.head = 'relu_linear'
  c.model.compute_dtype = 'bfloat16'

  c.task.ways, c.task.shots, c.task.queries = 3, 4, 1
  c.task.tasks_per_device = 64         # 1.06x (224 px) to 1.3x (84 px) the speed of 32 on an H100
  c.task.meta_on = ('source',)

  c.align.pairs, c.align.ways = 15, 3
  c.align.loss, c.align.margin, c.align.weight = 'proto_triplet', 0.5, 1.0
  c.align.mode = 'reptile'
  c.align.inner_batch = 4

  c.meta.learner = 'reptile'
  c.meta.inner_steps = 9
  c.meta.inner_opt = 'adam'
  c.meta.inner_lr = 1e-4
  c.meta.inner_batch = 8

  c.optim.name, c.optim.lr, c.optim.clip_norm = 'adam', 1e-4, 0.0

  # Fastest measured on H100/H200 (docs/SPEED.md): tasks vmapped (the LSTM's 64-step loop runs
  # once for all tasks) with the ResNet's per-task convolutions as GEMMs (`execution.conv='auto'`
  # under vmap on GPU: Pallas implicit GEMMs for the 64-channel 3x3 convolutions and the folded
  # stem, patch GEMMs for the rest): 2.6-3.9x the grouped convolutions; the Pallas stem alone
  # 1.11x at 224 px (docs/SPEED.md).
  c.execution.task_batching = 'vmap'
  c.execution.inner_loop = 'scan'
  c.execution.conv = 'auto'
  c.execution.map_encoders = ()
  # 16 LSTM time steps per loop iteration: fewer loop trips (1.07x at 84 px). The first inner
  # step runs outside the scanned loop (`execution.inner_peel`, the default), on weights shared
  # by all tasks: with one inner step per loop iteration 1.04x at 84 px and 1.02x at 224 px over
  # the former two steps without it, and 13.8 -> 8.9 GiB. With it, two per iteration
  # (`inner_unroll=2`) add 2 % at 84 px but took 39-66 s to compile; one takes 30-48 s. Unrolling all 9 (`execution.inner_loop='unroll'`) is 1.17x / 1.09x without the
  # peel but compiles in 100-127 s, over the 60 s budget of a shipped config (H100,
  # docs/SPEED.md).
  c.execution.rnn_unroll = 16
  c.execution.inner_unroll = 1

  c.eval.ways, c.eval.shots, c.eval.queries = 3, 5, 5
  c.eval.inner_steps, c.eval.inner_lr = 9, 1e-4

  c.data.source_dataset = c.data.target_dataset = 'yummly28k'
  c.data.source_feature, c.data.target_feature = 'text', 'image'
  return c
