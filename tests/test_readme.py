"""The README's research-code snippet runs as written."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow   # the default model's train step: over a minute of CPU to compile
def test_readme_python_snippet_runs():
  with open(os.path.join(REPO, 'README.md')) as f:
    blocks = re.findall(r'```python\n(.*?)```', f.read(), re.S)
  assert blocks, 'README.md has no python snippet'
  proc = subprocess.run([sys.executable, '-c', blocks[0]], cwd=REPO, capture_output=True,
                        text=True, timeout=900, env=dict(os.environ, PYTHONPATH=REPO))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "'loss'" in proc.stdout and 'align_loss' in proc.stdout
