"""`report` on a ledger made by a real optimize run (scripted model): the figures match a hand
computation from the raw rollouts, the page is self-contained, and headless Chromium can click from the
leaderboard to a diff and from a flip to its trace."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from harness_opt.ledger import Ledger
from harness_opt.report.compare import diff
from harness_opt.report.leaderboard import leaderboard
from harness_opt.report.page import report
from harness_opt.search.budget import Budget
from harness_opt.search.config import OptimizeConfig
from harness_opt.search.loop import optimize
from harness_opt.testing import scripted_model
from tests.support.optimize import SEED, SUITE, ScriptedProposer, gold_by_text, marker_rounds

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def optimized_home(tmp_path_factory: pytest.TempPathFactory):
    """One optimize run for the whole module (it takes ~10 s), in its own home."""
    root = tmp_path_factory.mktemp("optimized")
    seed = root / "harnesses" / "banking77" / "v0001"
    shutil.copytree(SEED, seed)
    gold = gold_by_text()

    def respond(messages, tools, params):  # right on about half the tasks, on all with the marker prompt
        text = messages[-1]["content"].strip()
        good = "Think about which label" in messages[0]["content"] or len(text) % 2 == 0
        return gold.get(text, "unknown") if good else "not_a_label"

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_OPT_HOME", str(root / "home"))
        mp.setenv("HARNESS_OPT_TRACES", str(root / "home" / "traces"))
        ledger = Ledger()
        with scripted_model("task", respond) as model:
            config = OptimizeConfig(
                harness=seed,
                suite=SUITE,
                model=model.model,
                val_limit=16,
                test_limit=6,
                train_sample=4,
                budget=Budget(iterations=4),
            )
            result = optimize(config, ledger=ledger, proposer=ScriptedProposer(marker_rounds()))
    return root / "home", ledger, result


@pytest.fixture
def optimized(optimized_home, monkeypatch: pytest.MonkeyPatch):
    home, ledger, result = optimized_home
    monkeypatch.setenv("HARNESS_OPT_HOME", str(home))
    monkeypatch.setenv("HARNESS_OPT_TRACES", str(home / "traces"))
    return ledger, result


def _by_hand(ledger: Ledger, version: str) -> dict[str, float]:
    """Task means from every raw row: keep the newest row per (task, trial), skip llm_error rows."""
    latest: dict[tuple[str, int], tuple] = {}
    for r in ledger.rollouts(version_hash=version, suite="banking77", split="val"):
        if r.error != "llm_error":
            latest[(r.task_id, r.trial)] = (r.score, r.passed)  # rollouts() is oldest first
    by_task: dict[str, list[float]] = {}
    for (task, _), (score, _) in latest.items():
        by_task.setdefault(task, []).append(score)
    return {t: sum(v) / len(v) for t, v in by_task.items()}


def test_figures_of_a_real_optimize_run(optimized):
    ledger, result = optimized
    (board,) = leaderboard("banking77", ledger=ledger)
    best = next(r for r in board.rows if r.incumbent)
    assert best.hash == result.best_hash != result.baseline_hash
    for row in board.rows:
        means = _by_hand(ledger, row.hash)
        assert row.score == pytest.approx(sum(means.values()) / len(means))
        assert row.n_tasks == len(means)
    assert best.score == pytest.approx(result.best_val.score)
    d = diff(result.baseline_hash[:12], result.best_hash[:12], suite=SUITE, ledger=ledger)
    assert d.results is not None and d.versions is not None
    base, top = _by_hand(ledger, result.baseline_hash), _by_hand(ledger, result.best_hash)
    # the baseline ran twice (noise), the candidate once: only the common trial 0 is paired
    assert d.results.n_rollouts == len(top)
    fixed = sorted(t for t in top if top[t] == 1.0 and base[t] < 1.0)
    assert [f.task_id for f in d.results.fixed] == fixed and d.results.broken == []
    assert [s.label for s in d.versions.lineage][-1] == result.best_label
    assert any(f.path == "prompts/system.j2" for f in d.versions.files)


def test_report_is_self_contained(optimized, tmp_path: Path):
    ledger, result = optimized
    out = report(result.run_id[:10], out=tmp_path / "r.html", ledger=ledger)
    html = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the page must not load anything"
    assert "<script src" not in html and "<link" not in html
    assert "data:image/png;base64," in html  # the progress plot, embedded
    assert result.best_label in html and "Pareto" in html


@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)
def test_browser_clicks_to_a_diff_and_a_trace(optimized, tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    ledger, result = optimized
    page = report(result.run_id, out=tmp_path / "report.html", ledger=ledger)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(page.resolve().as_uri())
        assert result.best_label in driver.find_element(By.ID, "leaderboard-table").text
        driver.find_element(By.ID, "tab-diff").click()
        driver.find_element(By.ID, "diff-go").click()
        body = driver.find_element(By.ID, "diff-body")
        assert body.is_displayed() and "fixed" in body.text and "prompts/system.j2" in body.text
        driver.save_screenshot(str(tmp_path / "diff.png"))
        driver.find_elements(By.CSS_SELECTOR, "#diff-body a.trace-link")[0].click()
        view = driver.find_element(By.ID, "trace-view")
        assert view.is_displayed() and "LLM call #1" in view.text and "tokens" in view.text
        shot = tmp_path / "trace.png"
        driver.save_screenshot(str(shot))
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
    assert shot.stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'diff.png'} {shot}")
