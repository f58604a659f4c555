r"""Exports a config's data to one bundle, for training where TensorFlow is not installed.

  python launch/export_data.py --config configs/gpu_image_audio.py --steps 3000 --out b.npz
  python launch/export_data.py --config configs/gpu_image_audio.py --out no_align.npz \
      --config.align.enabled=False --examples examples.npz     # one copy of the examples
  python launch/run.py --config configs/gpu_image_audio.py --exported b.npz --workdir runs/x

Runs the real data pipeline (TFDS, tf.data) of the config here and writes the raw examples,
the index batches of the first --steps training steps, the fixed evaluation episodes, the
retrieval pairs, the split and the target subset (meta_align_jax/feeds/exported.py). A run with
--exported reads only the bundle, with numpy and JAX.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_STEPS = flags.DEFINE_integer('steps', None, 'Training steps to export (default: '
                              'config.train.num_steps).')
_OUT = flags.DEFINE_string('out', None, 'The bundle (.npz) to write.')
_EXAMPLES = flags.DEFINE_string('examples', None, 'Write the raw examples to this file instead of '
                                'into the bundle: bundles of several configs over the same data '
                                'then share one copy (kept next to them).')
flags.mark_flags_as_required(['config', 'out'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from meta_align_jax import parallel  # pylint: disable=g-import-not-at-top
  from meta_align_jax.data import export  # pylint: disable=g-import-not-at-top
  from meta_align_jax import lowres  # pylint: disable=g-import-not-at-top
  config = lowres.apply(_CONFIG.value)
  steps = _STEPS.value or int(config.train.num_steps)
  meta = export.export_bundle(config, _OUT.value, steps=steps, examples_path=_EXAMPLES.value,
                              log_every=500, devices=parallel.num_batch_devices(config))
  size = os.path.getsize(_OUT.value) / 2**20
  print(f'Wrote {_OUT.value}: {meta["steps"]} steps x {meta["tasks_per_step"]} tasks, '
        f'{meta["source"]["num_examples"]} source and {meta["target"]["num_examples"]} target '
        f'examples, episodes {meta["episodes"]}, {size:.1f} MiB.')


if __name__ == '__main__':
  app.run(main)
