"""What the dispatcher reads about this host: whether a process still runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from dispatcher.environment import process_alive


def test_a_running_process_is_alive_and_a_reaped_one_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid)
    assert process_alive(os.getpid())


def test_a_zombie_is_dead():
    """A killed worker whose parent died too stays a zombie wherever the first process
    reaps nothing (a container without an init): its leftovers are a dead owner's."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while process_alive(pid):  # exited, not reaped: a zombie
            assert time.monotonic() < deadline, "a zombie counted as alive"
            time.sleep(0.01)
        os.kill(pid, 0)  # it is still there to signal: only its state says it is dead
    finally:
        os.waitpid(pid, 0)
