"""Pauses an rlntp run at chosen steps, so a test can interrupt or kill it at a moment it chooses.

A test puts this directory on PYTHONPATH (Python then imports this module at start-up, in spawned sweep
workers too) and sets RLNTP_TEST_PAUSE_DIR and RLNTP_TEST_PAUSE_STEPS (e.g. "20,60"). Right after a run
saves the checkpoint of such a step it writes PAUSE_DIR/paused-STEP-PID and waits until PAUSE_DIR/go-STEP
exists. A SIGINT while it waits is a Ctrl-C at that step; a SIGKILL kills it there.
"""

import os
import time
from pathlib import Path

_DIR = os.environ.get("RLNTP_TEST_PAUSE_DIR")
if _DIR:
    import rlntp.runs.checkpoints as _checkpoints

    _steps = {int(s) for s in os.environ["RLNTP_TEST_PAUSE_STEPS"].split(",")}
    _save = _checkpoints.save_checkpoint

    def _save_then_pause(run_dir, step, *args, **kwargs):
        path = _save(run_dir, step, *args, **kwargs)
        if step in _steps:
            (Path(_DIR) / f"paused-{step}-{os.getpid()}").touch()
            while not (Path(_DIR) / f"go-{step}").exists():
                time.sleep(0.01)
        return path

    _checkpoints.save_checkpoint = _save_then_pause
