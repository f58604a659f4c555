"""One run per work directory: an advisory lock on WORKDIR/lock held while a run trains.

Two runs on one workdir would both write checkpoints, metrics.jsonl and event files (the second
crashes on a checkpoint the first already wrote, after corrupting the metrics). `hold(workdir)`
takes an exclusive `fcntl.flock` on WORKDIR/lock and writes the holder (host, pid, start time)
into it; a second run is refused with that holder in the message. The kernel drops the lock when
its process dies, even by SIGKILL, so a stale lock file left by a dead run never blocks a resume:
its contents are only a description, the flock is the lock. On a file system without flock
support (some network mounts), the lock is skipped with a warning.

Only process 0 of a multi-process run locks (the other processes write no files of their own).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket

from absl import logging

LOCK_FILE = 'lock'


class WorkdirLockedError(RuntimeError):
  """Another live process holds the work directory's lock."""


def _holder(path: str) -> str:
  try:
    with open(path) as f:
      info = json.load(f)
    return (f"host {info.get('host')}, pid {info.get('pid')}, started "
            f"{info.get('start_time')}")
  except (OSError, ValueError):
    return 'a process that has not written its name yet'


@contextlib.contextmanager
def hold(workdir: str, *, primary: bool = True):
  """Holds WORKDIR/lock for the duration of the block; raises WorkdirLockedError if taken."""
  if not primary:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
        raise WorkdirLockedError(
            f'{os.path.abspath(workdir)} is in use by another run ({_holder(path)}); two runs on '
            'one work directory would overwrite each other\'s checkpoints and metrics. Wait for '
            'it to finish (or stop it), or pass another --workdir.') from None
      logging.warning('Cannot lock %s (%s): not guarding against a second run.', path, e)
    info = {'host': socket.gethostname(), 'pid': os.getpid(),
            'start_time': datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds')}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + '\n').encode(), 0)
    yield
  finally:
    os.close(fd)   # releases the flock; the file stays (removing it would race a new holder)
