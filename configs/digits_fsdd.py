r"""Real image -> speech: scikit-learn handwritten digits -> FSDD spoken digits (10 classes).

Source: the 1,797 8x8 digit images of scikit-learn (shipped with it), resized to 16x16 grey.
Target: Free Spoken Digit Dataset recordings (6 speakers, 3,000 clips) as 1 s log-mels [32, 40],
`config.data.target_train_shots` clips per meta-train digit. Ten classes only, so the class split
is 4 / 3 / 3 digits (meta-train / meta-val / meta-test) and tasks are 3-way: meta-test episodes
are 3-way 1-shot tasks on three digits never seen in training (which three depends on the seed).

FSDD is read from a local copy, `config.data.manual_dir` (a clone of
github.com/Jakobovski/free-spoken-digit-dataset, or a directory holding it as `fsdd/`); here:

  python launch/run.py --config configs/digits_fsdd.py --workdir runs/digits_fsdd \
      --config.data.manual_dir=../shared/data/fsdd
"""

from configs import default


def get_config():
  c = default.get_config()
  c.source.modality, c.source.encoder, c.source.input_shape = 'image', 'conv4', (16, 16, 1)
  c.target.modality, c.target.encoder, c.target.input_shape = 'speech', 'mel_cnn', (32, 40)
  c.data.source_dataset, c.data.source_feature = 'sklearn_digits', 'image'
  c.data.target_dataset, c.data.target_feature = 'fsdd', 'speech'
  c.data.manual_dir = ''
  c.data.split_fractions = (0.4, 0.3, 0.3)
  c.task.ways = 3
  c.align.ways = 3
  c.align.pairs = 15
  c.eval.ways = 3
  return c
