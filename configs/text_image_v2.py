r"""text -> image on `synthetic_concepts/v2`: a task built to pass the premise gate.

Source: token ids of the concept descriptions (LSTM), the same text as v1. Target: the v2
image (`meta_align_jax/data/builders/synthetic_concepts/image_v2.py`): v1's class code under
strong class-independent nuisance, so that raw features and random encoders sit near chance,
a linear read-out fit on a few labelled classes generalises poorly and one fit on all
meta-train classes does well (docs/results/premise.md, docs/results/premise/text_image_v2.json).
The low-resource target set is `config.lowres`: 5 meta-train classes x 5 labelled examples,
the same for every method (mirrored in config.data.target_train_classes / target_train_shots).

  python launch/premise.py --config configs/text_image_v2.py --seeds 0,1,2
  python launch/run.py --config configs/text_image_v2.py --workdir runs/text_image_v2
"""

from configs import text_audio_v2


def get_config():
  c = text_audio_v2.get_config()   # same source, dataset version and labelled set; image target
  c.target.modality, c.target.encoder, c.target.input_shape = 'image', 'conv4', (32, 32, 3)
  c.data.target_feature = 'image'
  return c
