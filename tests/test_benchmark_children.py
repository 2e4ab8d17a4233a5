"""The benchmarks that run the ``cloudfree`` command through its launcher and report after it
(the README's speed command among them) still get their report out: the launcher ends the
process after its own exit handlers."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT, SUMMER_S1, SUMMER_S2

BENCHMARKS = ROOT / "benchmarks"


def test_remove_speeds_memory_child_prints_its_peak_after_the_command(tmp_path):
    out = tmp_path / "o.tif"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "remove_speed.py"), "--child",
                           str(SUMMER_S2), str(SUMMER_S1), str(out), "--models", "median-fill"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    peak = json.loads(done.stdout.splitlines()[-1])["peak_rss_mb"]
    assert 50 < peak < 4000 and out.exists()


def test_count_decodes_reports_each_input_once_read(tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / "count_decodes.py"), "remove",
                           "--s2", str(SUMMER_S2), "--s1", str(SUMMER_S1),
                           "-o", str(tmp_path / "o.tif"), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"decodes {SUMMER_S2.name}: " in done.stderr
    assert "each band read 1.00 times over" in done.stderr
