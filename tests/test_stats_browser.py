"""A real browser reads a two-model leaderboard: tiers, the metric picker, the paired verdict, calibration."""
import subprocess
import sys

import pytest

from tests.conftest import ROOT, assert_no_exception_box, open_page, screenshot, wait_idle

pytestmark = pytest.mark.browser


def test_leaderboard_tiers_metric_picker_and_paired_verdict(page, lab_server):
    # two built-in classifiers on 30 test reviews, run by the CLI into the server's home (a stored run)
    done = subprocess.run([sys.executable, "-m", "llm_lab", "bench", "--suite", "demo-classifier", "--model",
                           "minilm-sentiment", "--model", "minilm", "--limit", "30"], cwd=ROOT,
                          env=lab_server["env"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = next(line.split()[1].rstrip(":") for line in done.stderr.splitlines() if line.startswith("run cli-"))
    page.set_viewport_size({"width": 1400, "height": 3400})
    open_page(page, lab_server, f"benchmarks?result={run_id}")
    assert_no_exception_box(page)
    page.get_by_role("heading", name="Is the difference real?").wait_for(timeout=60_000)
    tiers = page.locator(".st-key-b_tiers").inner_text()
    assert "Tiers on reviews-sentiment · accuracy" in tiers and "tier 1: minilm-sentiment" in tiers
    verdicts = page.get_by_text("minilm-sentiment beats minilm by").first.inner_text()
    assert "McNemar exact p" in verdicts and "flips to right" in verdicts
    # the metric picker: add ECE and macro-F1 to the leaderboard's columns
    picker = page.locator(".st-key-b_metrics_shown input")
    for name in ("brier", "roc_auc"):
        picker.click()
        picker.fill(name)
        picker.press("Enter")
        picker.press("Escape")
        wait_idle(page)
    assert_no_exception_box(page)
    chosen = page.locator(".st-key-b_metrics_shown").inner_text()
    assert "brier" in chosen and "roc_auc" in chosen
    caption = page.get_by_text("Cells: value [95% interval] n=examples").first.inner_text()
    assert "Wilson score interval" in caption and "BCa bootstrap" in caption and "Tier" in caption
    screenshot(page, "bench-tiers-metric-picker")
    page.locator("[data-testid='stTab']", has_text="Calibration").click()
    wait_idle(page)
    assert page.get_by_text("Reliability diagram").count() >= 1
    assert_no_exception_box(page)
    screenshot(page, "bench-calibration")
