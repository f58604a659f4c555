"""The files of a checkpoint directory, beyond what Orbax manages: deletions that a kill cannot
leave half done, and quiet failures of unreadable steps (used by `checkpoint.py`).

Orbax deletes an old step by renaming it into `checkpoints/.deleting` (`DELETING_DIR`, an atomic
rename; `CheckpointManagerOptions.todelete_subdir`); the renamed steps are removed here, before
the next save and when the manager closes. A kill during that removal leaves files only under
.deleting, never among the saved steps. A step that lost an item directory (how a kill during
Orbax's own rmtree left steps before this) is ignored when listing and its deletion finished by
the next writable manager.
"""

from __future__ import annotations

import os
import shutil
import sys

import jax
from absl import logging

DELETING_DIR = '.deleting'
ITEMS = ('state', 'shapes')


def _step_dirs(directory: str) -> dict[int, str]:
  if not os.path.isdir(directory):
    return {}
  return {int(n): os.path.join(directory, n) for n in os.listdir(directory) if n.isdigit()}


def _is_complete(step_dir: str) -> bool:
  """False for the remains of an interrupted deletion: an item directory missing or empty."""
  for item in ITEMS:
    path = os.path.join(step_dir, item)
    if not os.path.isdir(path) or not os.listdir(path):
      return False
  return True


def finish_deletions(directory: str) -> None:
  """Deletes what Orbax renamed into DELETING_DIR and half-deleted steps left by older versions."""
  for step, path in sorted(_step_dirs(directory).items()):
    if not _is_complete(path):
      logging.warning('Checkpoint step %d in %s is half deleted (a run was killed while removing '
                      'old steps): finishing its deletion.', step, directory)
      os.makedirs(os.path.join(directory, DELETING_DIR), exist_ok=True)
      os.replace(path, os.path.join(directory, DELETING_DIR, f'{step}.half-deleted'))
  shutil.rmtree(os.path.join(directory, DELETING_DIR), ignore_errors=True)


def purge_deleted(directory: str) -> None:
  """Removes the steps Orbax renamed into DELETING_DIR (call when no save is in flight)."""
  if jax.process_index() == 0:
    shutil.rmtree(os.path.join(directory, DELETING_DIR), ignore_errors=True)


def close_manager(manager) -> None:
  """Waits for pending saves, closes the manager and removes the steps it renamed for deletion."""
  manager.wait_until_finished()
  manager.close()
  purge_deleted(str(manager.directory))


def complete_steps(manager) -> list[int]:
  """The manager's saved steps, sorted, without half-deleted ones (which are logged)."""
  dirs = _step_dirs(str(manager.directory))
  steps = []
  for step in sorted(manager.all_steps()):
    if step in dirs and not _is_complete(dirs[step]):
      logging.warning('Ignoring checkpoint step %d in %s: half deleted by a killed run.', step,
                      manager.directory)
      continue
    steps.append(step)
  return steps


def _closed_loop_error(exc) -> bool:
  return isinstance(exc, RuntimeError) and str(exc) == 'Event loop is closed'


def ignore_closed_event_loop_errors() -> None:
  """After a failed read, TensorStore still completes the other reads of the step and posts them
  to Orbax's event loop, which has closed: each prints 'RuntimeError: Event loop is closed'
  (through sys.excepthook or sys.unraisablehook), burying the real error under dozens of
  tracebacks. Installed before a restore, these hooks drop exactly those."""
  if not getattr(sys.excepthook, '_drops_closed_loop_errors', False):
    previous_excepthook = sys.excepthook

    def excepthook(exc_type, exc, tb):
      if not _closed_loop_error(exc):
        previous_excepthook(exc_type, exc, tb)

    excepthook._drops_closed_loop_errors = True  # pylint: disable=protected-access
    sys.excepthook = excepthook
  if not getattr(sys.unraisablehook, '_drops_closed_loop_errors', False):
    previous_unraisablehook = sys.unraisablehook

    def unraisablehook(unraisable):
      if not _closed_loop_error(unraisable.exc_value):
        previous_unraisablehook(unraisable)

    unraisablehook._drops_closed_loop_errors = True  # pylint: disable=protected-access
    sys.unraisablehook = unraisablehook
