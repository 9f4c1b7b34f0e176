"""Model-written text in a trace cannot change the HTML report (finding 8: `<!--<script>` in a trace made
the browser swallow the page's own script, and the lineage, diff and trace tabs died)."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness_opt.evaluate.evaluator import EvalConfig, evaluate
from harness_opt.ledger import Ledger
from harness_opt.report.page import report, script_json
from harness_opt.testing import scripted_model

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "harnesses" / "banking77" / "v0001"
SUITE = REPO / "tasks" / "banking77"
PAYLOAD = "<!--<script>x</script><script>document.title='owned'</script>&amp; \u2028\u2029"


def test_script_json_is_inert_markup_and_the_same_json() -> None:
    value = {"output": PAYLOAD, "nested": [PAYLOAD, {"k": PAYLOAD}]}
    text = script_json(value)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == value


def _page(tmp_path: Path) -> tuple[Path, str]:
    with scripted_model("report-escape", lambda *_: PAYLOAD) as model:
        evaluate(SEED, SUITE, EvalConfig(split="val", limit=2, model=model.model, isolation="bwrap"))
    page = report(suite=str(SUITE), out=tmp_path / "report.html", ledger=Ledger())
    return page, page.read_text(encoding="utf-8")


def test_a_trace_holding_script_markup_leaves_the_page_intact(tmp_path: Path) -> None:
    _, html = _page(tmp_path)
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert data is not None
    assert "<" not in data.group(1)  # nothing in the data can open or close an element, or a comment
    embedded: dict[str, Any] = json.loads(data.group(1))
    replies = [
        e["response"]["content"]
        for t in embedded["traces"].values()
        for e in t["events"]
        if e["type"] == "llm"
    ]
    assert replies == [PAYLOAD, PAYLOAD]  # the text itself is kept, exactly as the model wrote it
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the data and the page's code


def test_the_report_still_works_in_a_browser(tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "needs chromium and chromium-driver (scripts/install.sh --dev)"
    page, _ = _page(tmp_path)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(page.resolve().as_uri())
        assert driver.title != "owned"  # the trace's script did not run...
        driver.find_element(By.ID, "tab-lineage").click()
        assert driver.find_element(By.ID, "tree").text.strip()  # ...and the page's own script did
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == []
    finally:
        driver.quit()
