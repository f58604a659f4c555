"""The training loop's checkpoint selection (config.train.select / patience) on FakeData."""

import json
import os

from meta_align_jax import selection, train
from tests.fakes import FakeData, compilation_cache  # noqa: F401  (fixture)
from tests.fakes import config as _config
from tests.fakes import steps as _steps


def test_patience_stops_a_run_that_stopped_improving_and_it_stays_finished(tmp_path):
  # lr 0: the parameters never change, so every validation ties with the first: with patience 2,
  # the run stops at the third validation (step 6 of 12) and evaluates its best checkpoint.
  config = _config(**{'optim.lr': 0.0, 'train.num_steps': 12, 'train.eval_every': 2,
                      'train.checkpoint_every': 2, 'train.patience': 2,
                      'eval.report_both': True, 'eval.method': 'proto'})
  workdir = str(tmp_path / 'run')
  run = train.train_and_evaluate(config, workdir, data=FakeData())
  assert run.finished and run.early_stopped and run.step == 6
  history = json.load(open(os.path.join(workdir, selection.HISTORY_FILE)))
  assert [e['step'] for e in history] == [2, 4, 6]
  assert len({e['score'] for e in history}) == 1
  # Patience counts from the first of tied bests (a tie is no improvement); which tied checkpoint
  # 'best' restores is Orbax's choice (all score the same here).
  assert run.eval_results['checkpoint_step'] in (2, 4, 6)
  assert run.eval_results['accuracy_proto_mean'] == run.eval_results['accuracy_mean']
  assert 0.0 <= run.eval_results['accuracy_finetune_mean'] <= 1.0
  assert os.path.exists(os.path.join(workdir, 'episode_accuracies_finetune.npy'))
  again = train.train(config, workdir, data=FakeData())   # finished: nothing more is trained
  assert again.finished and again.early_stopped and max(_steps(workdir)) == 6


def test_select_final_evaluates_the_last_step_without_validating(tmp_path):
  config = _config(**{'train.select': 'final'})
  workdir = str(tmp_path / 'run')
  run = train.train_and_evaluate(config, workdir, data=FakeData())
  assert run.eval_results['checkpoint'] == 'latest' and run.eval_results['checkpoint_step'] == 6
  assert not os.path.exists(os.path.join(workdir, selection.HISTORY_FILE))
