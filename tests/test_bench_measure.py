"""The benchmark's CPU accounting counts processes the tool leaves to init.

``rdsmigrate copy`` runs its row relay in multiprocessing workers forked by a fork server that
nobody waits for: their CPU never reaches ``getrusage(RUSAGE_CHILDREN)``. Before the sampler's
figure was used too, a run's relay CPU was reported as load from outside the benchmark.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench import measure

# The child forks a grandchild that burns CPU and exits once the work is done, without waiting
# for it: the grandchild ends as an orphan reaped by init, as the fork server and its workers do
# once the command has exited.
ORPHAN = """
import os, sys, time
r, w = os.pipe()
if os.fork() == 0:
    end = time.process_time() + 0.6
    while time.process_time() < end:
        pass
    os.write(w, b"x")
    time.sleep(0.2)
    open(sys.argv[1], "w").close()
    os._exit(0)
os.read(r, 1)
os._exit(0)
"""


def test_cpu_of_an_orphaned_grandchild_is_the_tools(tmp_path: Path) -> None:
    done = tmp_path / "done"
    with measure.measured([]) as usage:
        subprocess.run([sys.executable, "-c", ORPHAN, str(done)], check=True)
        deadline = time.monotonic() + 30
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    assert done.exists()
    assert usage.cpu_seconds >= 0.45, usage
    assert usage.other_cpu_seconds < usage.cpu_seconds, usage
