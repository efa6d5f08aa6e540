#!/usr/bin/env python
"""A screenshot of nmt-serve's page after translating a sentence: the README's picture.

    scripts/bench/serve_screenshot.py RUN_DIR [--out docs/serve-page.png] [--text "Ein Hund läuft über eine Wiese."]

Serves RUN_DIR on a free port of 127.0.0.1, opens the page in Debian's headless chromium through
chromium-driver (apt-get install chromium chromium-driver; nothing is downloaded), types --text,
clicks Translate, waits for the heatmap and saves the window as a PNG.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import REPO, start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="run or checkpoint directory to serve")
    parser.add_argument("--out", default=str(REPO / "docs" / "serve-page.png"), help="PNG to write")
    parser.add_argument("--text", default="Ein Hund läuft über eine Wiese.", help="sentence to translate")
    parser.add_argument("--size", default="820,720", help="window width,height in pixels (the height grows to fit the page)")
    args = parser.parse_args()
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        sys.exit("needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ["SE_OFFLINE"] = "true"
    process, port = start_server(args.run_dir, [], Path(tempfile.gettempdir()) / "serve_screenshot.log")
    try:
        with tempfile.TemporaryDirectory() as profile:
            options = webdriver.ChromeOptions()
            options.binary_location = chromium
            for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                         f"--window-size={args.size}", f"--user-data-dir={profile}"):
                options.add_argument(flag)
            driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
            try:
                driver.get(f"http://127.0.0.1:{port}/")
                wait = WebDriverWait(driver, 30)
                wait.until(lambda d: "→" in d.find_element(By.ID, "model").text)
                driver.find_element(By.ID, "source").send_keys(args.text)
                driver.find_element(By.ID, "translate").click()
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#heatmap tbody tr"))
                height = driver.execute_script("return document.documentElement.scrollHeight"
                                               " + window.outerHeight - window.innerHeight")
                driver.set_window_size(int(args.size.split(",")[0]), height)  # the whole page, no scrolling
                driver.save_screenshot(args.out)
            finally:
                driver.quit()
    finally:
        process.terminate()
        process.wait(timeout=60)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
