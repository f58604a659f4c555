r"""text -> speech on the embedded `synthetic_concepts` data (the paper's text->speech family).

Source: token ids of concept descriptions (LSTM). Target: 2 s log-mels `[64, 40]` of the
attribute phrase spoken by eSpeak NG in 48 voices with noise (log-mel 2-D CNN). The hardest of
the embedded tasks: raw speech features are at chance for nearest-neighbour 1-shot (see
`meta_align_jax/data/builders/synthetic_concepts.py`).

  python launch/run.py --config configs/text_speech.py --workdir runs/text_speech
"""

from configs import default


def get_config():
  c = default.get_config()
  c.source.modality, c.source.encoder, c.source.input_shape = 'text', 'lstm', (16,)
  c.target.modality, c.target.encoder, c.target.input_shape = 'speech', 'mel_cnn', (64, 40)
  c.data.source_feature, c.data.target_feature = 'text', 'speech'
  c.model.hidden = 64
  return c
