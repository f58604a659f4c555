r"""image -> audio on the embedded `synthetic_concepts` data: the paper's image->audio task.

Identical to `configs/default.py` (32x32 images meta-learned with Reptile, log-mel sounds of the
same concepts as the low-resource target, weak pairs aligned with the prototype triplet loss,
5-way 1-shot target tasks on held-out concepts); a named file so that sweeps and results tables
refer to the task, not to "the default".

  python launch/run.py --config configs/image_audio.py --workdir runs/image_audio
"""

from configs import default


def get_config():
  return default.get_config()
