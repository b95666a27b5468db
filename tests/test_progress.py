"""Progress in a log: at most a line every few seconds per job, and the last state."""

from __future__ import annotations

import io
import time

from simulate.progress import LogProgress, progress_bar


def test_log_progress_prints_rarely_and_ends_with_the_last_state():
    out = io.StringIO()
    bar = LogProgress(range(50), "reconstruct", interval=0.05, stream=out)
    for i in bar:
        bar.set_postfix(loss=f"{1 / (i + 1):.3g}")
        time.sleep(0.004)  # 50 x 4 ms = 0.2 s: about 4 lines, not 50
    bar.close()
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 8, lines
    assert lines[-1].startswith("reconstruct: 50/50 (") and lines[-1].endswith("loss=0.02")
    assert "\r" not in out.getvalue()


def test_progress_bar_is_quiet_when_not_a_terminal(capsys):
    for _ in progress_bar(range(1000), "abTEM tilts"):  # pytest's stderr is not a terminal
        pass
    assert len(capsys.readouterr().err.splitlines()) <= 1
    for _ in progress_bar(range(10), "off", enabled=False):
        pass
    assert capsys.readouterr().err == ""
