r"""Single-modality few-shot learning: ProtoNet on Omniglot characters, 20-way 1-shot.

One encoder (Conv-4 on 28x28 grey characters, `config.target`), one dataset (`omniglot`, read
from the original zips in `config.data.manual_dir`), no alignment: `config.task.modalities =
('target',)`. Every character also appears rotated by 90/180/270 degrees as a class of its own
(`config.augment.rotation_classes`; rotations follow their character's split). Classes are split
60/20/20 % into meta-train / meta-val / meta-test characters (on the 242-character subset in
../shared/data/omniglot: 145 / 48 / 49 characters, four classes each); evaluation: 20-way 1-shot
episodes on the meta-test classes, prototype scoring.

  python launch/run.py --config configs/omniglot_20way.py --workdir runs/omniglot_20way \
      --config.data.manual_dir=../shared/data/omniglot
"""

from configs import default


def get_config():
  c = default.get_config()
  c.task.modalities = ('target',)
  c.task.meta_on = ('target',)
  c.target.modality, c.target.encoder, c.target.input_shape = 'image', 'conv4', (28, 28, 1)
  c.data.target_dataset, c.data.target_feature = 'omniglot', 'image'
  c.data.source_dataset, c.data.source_feature = 'omniglot', 'image'   # unused, not loaded
  c.data.manual_dir = '../shared/data/omniglot'
  c.data.target_train_shots = 20       # every drawer of a meta-train character
  c.align.enabled = False
  c.augment.rotation_classes = True
  c.model.width = 64
  c.model.z_dim = 64
  c.meta.learner = 'protonet'
  c.task.ways = 20
  c.task.shots = 1
  c.task.queries = 5
  c.task.tasks_per_device = 1
  c.optim.lr = 1e-3
  c.train.num_steps = 2000
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.train.eval_every = 500
  c.train.val_episodes = 100
  c.eval.method = 'proto'
  c.eval.retrieval = False
  c.eval.ways = 20
  c.eval.shots = 1
  c.eval.queries = 5
  c.eval.num_episodes = 600
  c.eval.batch_episodes = 10
  return c
