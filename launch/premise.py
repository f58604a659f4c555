r"""The premise gate of a task: method-independent accuracies and pass/fail (lab/premise.py).

  python launch/premise.py --config configs/text_audio_v2.py --seeds 0,1,2
  python launch/premise.py --config configs/digits_fsdd.py \
      --config.data.manual_dir=../shared/data --seeds 0,1,2
  python launch/premise.py --config configs/image_audio.py \
      --oracle runs/oracle_s0/eval_results.json,runs/oracle_s1/eval_results.json,...

Prints the table and writes docs/results/premise/<config file stem>.json (or --out). Without
--oracle the oracle entry is null and target_lda_all stands in for it (marked provisional).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from meta_align_jax.lab import premise  # noqa: E402

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds (class split, episodes, init).')
_ORACLE = flags.DEFINE_list('oracle', [], "The oracle's eval_results.json, one per seed.")
_OUT = flags.DEFINE_string('out', None, 'Output JSON (default docs/results/premise/<stem>.json).')
_NAME = flags.DEFINE_string('name', None, 'Task name in the default output path (default: the '
                            'config file stem).')


def main(argv):
  del argv
  if _CONFIG.value is None:
    raise app.UsageError('--config is required, e.g. --config configs/text_audio_v2.py.')
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError as e:
    raise app.UsageError(f'--seeds={",".join(_SEEDS.value)}: use comma-separated integers.') from e
  stem = _NAME.value or os.path.splitext(
      os.path.basename(flags.FLAGS['config'].config_filename))[0]
  out = _OUT.value or os.path.join(_ROOT, 'docs', 'results', 'premise', f'{stem}.json')
  report = premise.run_gate(_CONFIG.value, seeds, oracle=premise.load_oracle(_ORACLE.value),
                            log=print)
  report['task'] = stem
  report['command'] = ' '.join(['python', 'launch/premise.py'] + sys.argv[1:])
  print(premise.format_table(report))
  print('wrote', premise.write_report(report, out))


if __name__ == '__main__':
  app.run(main)
