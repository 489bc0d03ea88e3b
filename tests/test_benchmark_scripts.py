"""Every benchmark script starts from the repository root (`python benchmarks/X.py --help`), takes --quick
and prints ratio=<ours/baseline> (the project's rules for benchmarks). New scripts are covered by the glob."""
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def test_there_are_benchmark_scripts():
    assert SCRIPTS, "no benchmarks/*.py found"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_benchmark_script_starts_with_help(script):
    try:
        proc = subprocess.run([sys.executable, str(script.relative_to(ROOT)), "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"benchmarks/{script.name} --help took more than {exc.timeout} s")
    assert proc.returncode == 0, (f"benchmarks/{script.name} --help exited with status {proc.returncode}:\n"
                                  f"{proc.stderr}")
    assert "--quick" in proc.stdout, f"benchmarks/{script.name} --help does not list --quick:\n{proc.stdout}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_benchmark_script_takes_quick_and_prints_a_ratio(script):
    source = script.read_text()
    assert "--quick" in source, f"benchmarks/{script.name} takes no --quick"
    assert re.search(r"print\([^\n]*ratio=", source), f"benchmarks/{script.name} never prints ratio=<ours/baseline>"
