

def test_quiet_orbax_logs_keeps_other_libraries_and_orbax_warnings():
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from meta_align_jax import checkpoint  # pylint: disable=g-import-not-at-top
  keep = checkpoint._QuietOrbax().filter  # pylint: disable=protected-access
  orbax_file = os.path.join('site-packages', 'orbax', 'checkpoint', 'manager.py')
  record = lambda path, level, msg: std_logging.LogRecord('x', level, path, 1, msg, None, None)
  assert not keep(record(orbax_file, std_logging.INFO, 'Saving checkpoint at step 5'))
  assert keep(record(orbax_file, std_logging.WARNING, 'disk almost full'))
  assert not keep(record(orbax_file, std_logging.WARNING, 'Given directory is read only: /x'))
  assert keep(record(os.path.join('meta_align_jax', 'train.py'), std_logging.INFO, 'Step 5'))
