"""Record the running demo: `prodtune route` in a terminal card, then the Streamlit UI in headless
Chromium describing a product title and answering a question with its retrieved sources and scores.

Frames are PNG screenshots with a duration each; ffmpeg assembles them (scripts/demo-video.sh).
Needs the demo serving (`./scripts/demo.sh`: API on :8000, UI on :8501), Debian's chromium and
chromium-driver, and selenium (a dev dependency).

    python scripts/demo_video.py --frames DIR [--ui http://127.0.0.1:8501] [--title T] [--question Q]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
SIZE = (1280, 900)
CARD_CSS = (
    "body{margin:0;background:#1e1e2e;color:#cdd6f4;font:22px/1.45 'DejaVu Sans Mono',monospace;"
    "padding:48px 56px}h1{font:600 40px 'DejaVu Sans',sans-serif;color:#f5e0dc;margin:0 0 24px}"
    "p{font:26px/1.5 'DejaVu Sans',sans-serif;color:#bac2de}.cmd{color:#a6e3a1}.out{color:#f9e2af;"
    "white-space:pre-wrap;margin:4px 0 28px}"
)


class Recorder:
    """Screenshots into `frames/NNNN.png` and a concat list with each frame's duration."""

    def __init__(self, driver, frames: Path) -> None:  # type: ignore[no-untyped-def]
        self.driver, self.frames, self.entries = driver, frames, []
        frames.mkdir(parents=True, exist_ok=True)

    def shot(self, seconds: float) -> None:
        path = self.frames / f"{len(self.entries):04d}.png"
        self.driver.save_screenshot(str(path))
        self.entries.append((path.name, seconds))

    def card(self, body: str, seconds: float) -> None:
        page = self.frames / "card.html"
        page.write_text(f"<html><head><style>{CARD_CSS}</style></head><body>{body}</body></html>", "utf-8")
        self.driver.get(page.as_uri())
        self.shot(seconds)

    def write_list(self) -> Path:
        lines = []
        for name, seconds in self.entries:
            lines += [f"file '{name}'", f"duration {seconds:.2f}"]
        lines.append(f"file '{self.entries[-1][0]}'")  # ffmpeg's concat demuxer drops the last duration
        out = self.frames / "frames.txt"
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return out

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.entries)


def browser(profile: Path):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={SIZE[0]},{SIZE[1]}",
        f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def route_output(text: str) -> str:
    """The real `prodtune route TEXT` output (one JSON object), pretty-printed for the card."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "route", text],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode != 0:
        raise SystemExit(f"prodtune route failed: {proc.stderr.strip()[-500:]}")
    return json.dumps(json.loads(proc.stdout), ensure_ascii=False, indent=1)


def terminal_card(rec: Recorder, texts: list[str]) -> None:
    body = "<h1>$ prodtune route: which model handles a text?</h1>"
    for text in texts:
        out = route_output(text)
        body += f'<div class="cmd">$ prodtune route {html.escape(json.dumps(text, ensure_ascii=False))}</div>'
        body += f'<div class="out">{html.escape(out)}</div>'
    rec.card(body, 7.0)


def ask(rec: Recorder, ui: str, text: str, threshold_steps_down: int, max_wait: float) -> None:
    """Type `text` into the UI, submit, and film until the answer and its details are shown."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = rec.driver
    driver.get(ui)
    wait = WebDriverWait(driver, 120)
    box = wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, 'input[aria-label="Question or product title"]'))
    )
    time.sleep(1.5)
    if threshold_steps_down:
        slider = driver.find_element(
            By.CSS_SELECTOR, 'input[type="range"][aria-label="Similarity threshold (%)"]'
        )
        slider.find_element(By.XPATH, "../..").click()
        ActionChains(driver).send_keys(Keys.ARROW_LEFT * threshold_steps_down).perform()
        time.sleep(1.5)
        box = wait.until(
            ec.element_to_be_clickable((By.CSS_SELECTOR, 'input[aria-label="Question or product title"]'))
        )
    box.click()
    for i in range(0, len(text), 6):  # typed in chunks: a few frames of typing, not one per key
        box.send_keys(text[i : i + 6])
        if i % 24 == 0:
            rec.shot(0.4)
    rec.shot(1.0)
    driver.find_element(By.XPATH, "//button[.//p[text()='Ask'] or text()='Ask']").click()
    started = time.monotonic()
    while time.monotonic() - started < max_wait:
        time.sleep(1.0)
        rec.shot(0.6)
        page = driver.find_element(By.TAG_NAME, "body").text
        if "Route:" in page:
            break
    time.sleep(1.0)
    rec.shot(2.5)
    tables = driver.find_elements(By.TAG_NAME, "table")
    if tables:  # the retrieved products with their scores
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", tables[-1])
        time.sleep(0.5)
    rec.shot(5.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=Path, required=True)
    p.add_argument("--ui", default="http://127.0.0.1:8501")
    p.add_argument("--title", required=True, help="a product title for the describer")
    p.add_argument("--question", required=True, help="a question about a catalogue product")
    p.add_argument("--threshold-steps-down", type=int, default=0, help="5%% steps to lower the UI threshold")
    p.add_argument("--max-wait", type=float, default=150.0, help="seconds to film one answer at most")
    args = p.parse_args()
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        raise SystemExit(
            "needs Debian chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
        )
    driver = browser(args.frames / "profile")
    try:
        rec = Recorder(driver, args.frames)
        rec.card(
            "<h1>prodtune: the demo</h1><p>Two models fine-tuned by the pipeline, served from the MLflow "
            "registry: a <b>describer</b> (title &rarr; description) and a <b>QA model</b> (question + "
            "retrieved products &rarr; answer). A router picks one.</p><p>Embedded demo on 2 CPU cores: "
            "SmolLM2-135M, 20 LoRA steps each, llama.cpp on the GGUF.</p>",
            4.0,
        )
        terminal_card(rec, [args.title, args.question])
        rec.card(f"<h1>1. A product title</h1><p>{html.escape(args.title)}</p>", 2.0)
        ask(rec, args.ui, args.title, 0, args.max_wait)
        rec.card(f"<h1>2. A question about the catalogue</h1><p>{html.escape(args.question)}</p>", 2.0)
        ask(rec, args.ui, args.question, args.threshold_steps_down, args.max_wait)
        listing = rec.write_list()
        print(
            json.dumps({"frames": len(rec.entries), "seconds": round(rec.seconds, 1), "list": str(listing)})
        )
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
