r"""text -> image on the embedded `synthetic_concepts` data (the paper's text->image family).

Source: token ids of short concept descriptions (synonyms, word orders, fillers; 16 tokens),
encoded by a 1-layer LSTM (max-pooled). Target: the 32x32 images of the same concepts (Conv-4),
with `config.data.target_train_shots` images per meta-train class. Weak pairs, prototype triplet
loss, 5-way 1-shot image tasks on held-out concepts.

  python launch/run.py --config configs/text_image.py --workdir runs/text_image
"""

from configs import default


def get_config():
  c = default.get_config()
  c.source.modality, c.source.encoder, c.source.input_shape = 'text', 'lstm', (16,)
  c.target.modality, c.target.encoder, c.target.input_shape = 'image', 'conv4', (32, 32, 3)
  c.data.source_feature, c.data.target_feature = 'text', 'image'
  c.model.hidden = 64
  return c
