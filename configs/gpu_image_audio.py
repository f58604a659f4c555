r"""image -> audio at GPU scale: ResNet-18 (width 64) on 84x84 images, on the embedded data.

`configs/image_audio.py` with the source encoder of the paper's larger image models: the
synthetic concepts' 32x32 images upsampled to 84x84 (bilinear) for a ResNet-18 with GroupNorm,
bf16 compute, 16 tasks per step for 3,000 steps, meta-validation every 500. The target stays the
log-mel CNN on 1 s sounds; evaluation: 600 5-way 1-shot audio episodes of held-out concepts.

GPU machines without TensorFlow train from an exported bundle (meta_align_jax/feeds/exported.py):

  python launch/export_data.py --config configs/gpu_image_audio.py --out b.npz    # here
  python launch/run.py --config configs/gpu_image_audio.py --exported b.npz       # on the GPU

With TensorFlow installed, `python launch/run.py --config configs/gpu_image_audio.py` streams
the same batches from TFDS directly.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.source.encoder, c.source.input_shape = 'resnet18', (84, 84, 3)
  c.model.width = 64
  c.model.compute_dtype = 'bfloat16'
  c.task.tasks_per_device = 16
  c.train.num_steps = 3000
  c.train.eval_every = 500
  c.train.checkpoint_every = 500
  c.train.log_every = 100
  c.eval.batch_episodes = 50
  return c
