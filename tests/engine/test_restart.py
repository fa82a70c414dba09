"""Kill a game process with SIGKILL in the middle of a vote, restart it, and lose no vote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

HELPER = Path(__file__).with_name("vote_process.py")
ROOT = Path(__file__).resolve().parents[2]


def spawn(mode: str, db: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(HELPER), mode, str(db)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_sigkill_mid_vote_then_restart_loses_no_vote(tmp_path: Path) -> None:
    db = tmp_path / "cyoa.db"
    first = spawn("start", db)
    assert first.stdout is not None and first.stdin is not None
    assert first.stdout.readline().startswith("ready ")
    for number, vote in enumerate(["ana 2", "ben 2", "cam 0", "ana 1", "dee 2"], start=1):
        first.stdin.write(f"vote {vote}\n")
        first.stdin.flush()
        assert first.stdout.readline().strip() == f"saved {number}"
    first.send_signal(signal.SIGKILL)  # no clean shutdown: the vote is still open
    first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL

    second = spawn("resume", db)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    # ana's later vote replaced her first one; every other vote survived the kill
    assert sorted(map(tuple, result["votes"])) == [("ana", 1), ("ben", 2), ("cam", 0), ("dee", 2)]
    assert result["choice"] == 2 and result["chosen"] == 2 and result["scenes"] == 2
