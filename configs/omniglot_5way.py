r"""Single-modality few-shot learning: ProtoNet on Omniglot characters, 5-way 1-shot.

`configs/omniglot_20way.py` (one encoder, one dataset, rotations as classes) with 5-way tasks in
training and evaluation.

  python launch/run.py --config configs/omniglot_5way.py --workdir runs/omniglot_5way \
      --config.data.manual_dir=../shared/data/omniglot
"""

from configs import omniglot_20way


def get_config():
  c = omniglot_20way.get_config()
  c.task.ways = 5
  c.task.queries = 15
  c.task.tasks_per_device = 4
  c.eval.ways = 5
  c.eval.queries = 15
  return c
