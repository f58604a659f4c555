r"""Prototype few-shot accuracy of a trained run in BOTH modalities, on meta-test classes.

  python launch/source_fewshot.py runs/sweep/image_audio/meta_align/k1_n0/seed0 [more dirs]

For each work directory: the checkpoint's source encoder scored on N-way K-shot episodes of the
*source* modality (the same held-out classes, drawn as `make_eval_episodes` draws target
episodes), and its target encoder on the target episodes, both with prototypes in Z (no
fine-tuning). Meta-alignment transfers the source's class structure to the target through the
alignment, so the source-side number is what the target side could reach with a perfect
alignment. A diagnostic; nothing is written.
"""

import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import meta_align_jax  # noqa: E402
from meta_align_jax import data, evaluate, losses  # noqa: E402

_EPISODES = flags.DEFINE_integer('episodes', 600, 'Episodes per modality.')
_STEP = flags.DEFINE_string('step', 'latest', "Checkpoint: 'latest', 'best' or a step.")


def _side_config(config, side):
  """`config` whose *target* modality (the one episodes are drawn from) is `side`'s data."""
  c = copy.deepcopy(config)
  if side == 'source':
    c.data.target_dataset, c.data.target_feature = (config.data.source_dataset,
                                                    config.data.source_feature)
    c.target.input_shape = tuple(config.source.input_shape)
    c.target.modality = config.source.modality
    c.data.target_noise = 0.0
  return c


def proto_accuracy(config, model, params, side, num_episodes):
  episodes = data.make_eval_episodes(_side_config(config, side), 'test',
                                     num_episodes=num_episodes)
  ways = int(config.eval.ways)

  @jax.jit
  def score(s_x, s_y, q_x, q_y):
    logits = losses.proto_logits(model.embed(params, s_x, side), s_y,
                                 model.embed(params, q_x, side), ways)
    return jnp.mean(jnp.argmax(logits, -1) == q_y)

  acc = np.array([float(score(episodes['support']['x'][e], episodes['support']['y'][e],
                              episodes['query']['x'][e], episodes['query']['y'][e]))
                  for e in range(episodes['query']['y'].shape[0])])
  return evaluate.mean_ci95(acc)


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('Give one or more work directories.')
  step = int(_STEP.value) if _STEP.value.isdigit() else _STEP.value
  for workdir in argv[1:]:
    config, model, state = meta_align_jax.restore(workdir, step=step)
    out = []
    for side in ('source', 'target'):
      mean, ci = proto_accuracy(config, model, state.params, side, _EPISODES.value)
      modality = config.data[f'{side}_feature']
      out.append(f'{side} ({modality}) {100 * mean:.2f} +- {100 * ci:.2f} %')
    print(f'{workdir}: ' + '; '.join(out), flush=True)


if __name__ == '__main__':
  app.run(main)
