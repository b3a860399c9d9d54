"""Headless Chromium drives the Streamlit UI against a running API, then saves docs/ui-screenshot.png.

The API runs under uvicorn on 127.0.0.1 with the CatalogResponder (keyword retrieval over a few
products). Answers come from the real SmolLM2-135M GGUF through llama-cpp-python when both are
installed, otherwise from the responder's composed text; the test prints which one it used.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from serving.api.app import create_app
from serving.api.responder import RouteResult
from serving.api.settings import ApiSettings
from serving.api.testing import CatalogResponder, serve_in_thread

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
SMOLLM = Path("~/.cache/prodtune/models/SmolLM2-135M-Instruct.Q4_1.gguf").expanduser()
KEY = "browser-test-key"
PRODUCTS = [
    ("0000031909", "Girls Ballet Tutu Neon Pink", "High quality 3 layer ballet tutu. 12 inches in length."),
    ("B000FQ2JLW", "Stainless Steel Insulated Water Bottle 750ml", "Keeps drinks cold for 24 hours."),
    ("B00BXLSPZE", "Kids Ballet Slippers Pink Leather", "Full sole leather ballet shoes for girls."),
]
QUESTION = "What length is the girls ballet tutu neon pink?"


class RecordingResponder(CatalogResponder):
    """Keeps the last streamed result, so the test can look for exactly that answer on the page."""

    last: RouteResult | None = None

    def respond(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.last = super().respond(*args, **kwargs)
        return self.last


def _backend():  # type: ignore[no-untyped-def]
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    if not SMOLLM.is_file():
        return None
    from serving.llm.llamacpp import LlamaCppBackend

    return LlamaCppBackend(SMOLLM, n_ctx=1024, n_threads=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def responder() -> RecordingResponder:
    backend = _backend()
    print(f"answers from: {'SmolLM2-135M via llama.cpp' if backend else 'composed text (no llama_cpp/GGUF)'}")
    return RecordingResponder(PRODUCTS, backend=backend)


@pytest.fixture(scope="module")
def ui_url(responder: RecordingResponder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = create_app(responder, settings=ApiSettings(key=SecretStr(KEY)))
    home = tmp_path_factory.mktemp("home")
    with serve_in_thread(app) as api_url:
        port = _free_port()
        env = {**os.environ, "PRODTUNE_API_URL": api_url, "PRODTUNE_API_KEY": KEY, "HOME": str(home)}
        cmd = [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "serving/ui/rag.py"),
            "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).text == "ok":
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "streamlit exited"
                assert time.monotonic() < deadline, "streamlit did not come up"
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@pytest.fixture
def browser(tmp_path: Path):  # type: ignore[no-untyped-def]
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("needs Debian chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1400,1100", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def test_ask_in_the_ui_shows_answer_and_sources(ui_url: str, responder: RecordingResponder, browser) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(ui_url)
    box = wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, 'input[aria-label="Question or product title"]'))
    )
    # The similarity slider (default 60%) goes down to 40% with the keyboard: 4 steps of 5.
    slider = browser.find_element(
        By.CSS_SELECTOR, 'input[type="range"][aria-label="Similarity threshold (%)"]'
    )
    slider.find_element(By.XPATH, "../..").click()  # the visible thumb; focuses the hidden range input
    ActionChains(browser).send_keys(Keys.ARROW_LEFT * 4).perform()
    wait.until(lambda d: slider.get_attribute("value") == "40")
    time.sleep(1.0)  # Streamlit commits the slider value, then reruns the script
    box.send_keys(QUESTION)
    browser.find_element(By.XPATH, "//button[.//p[text()='Ask']]").click()
    # Wait for the end of the run: the sources table is drawn last (the UI is slow on a busy machine).
    for text in ("Retrieved products", "0000031909", "Route:"):
        wait.until(ec.presence_of_element_located((By.XPATH, f"//*[contains(text(), '{text}')]")))
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-testid="stSpinner"]'))
    time.sleep(1.0)  # let the last rerender settle before the screenshot
    page = browser.find_element(By.TAG_NAME, "body").text

    assert responder.calls[-1] == (QUESTION, 40.0, "prodtune-router")
    assert responder.last is not None and responder.last.answer
    # the model's words, compared without Markdown (the page renders the streamed text as Markdown)
    words = re.findall(r"\w+", responder.last.answer)[:6]
    assert " ".join(words) in " ".join(re.findall(r"\w+", page)), (responder.last.answer, page)
    assert "0000031909" in page and "Girls Ballet Tutu Neon Pink" in page
    assert "Route:" in page and "answer" in page
    out = ROOT / "docs" / "ui-screenshot.png"
    out.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(out))
    assert out.stat().st_size > 10_000
