"""Drive the demo Space in headless Chromium, as a user would: the browser test and the README
screenshot.

    python space/browser.py --screenshot reports/space.png     # starts the Space, generates, saves

``chromium_paths()`` finds Debian's ``chromium`` and ``chromedriver`` (or ``$CHROMIUM``,
``$CHROMEDRIVER``); Selenium is told both, so it downloads nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
from pathlib import Path

CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100")


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) executables, or None where either is missing."""
    browser = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_space(model=None):
    """The Space served on a free localhost port, in this process: (demo, url)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from app import _output_root, build_demo

    demo = build_demo(model)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        allowed_paths=[str(_output_root())])
    return demo, f"http://127.0.0.1:{port}/"


def generate_in_browser(url: str, strength: str | None = None, position: str = "", seed: int = 0, steps: int = 4,
                        screenshot=None, timeout: float = 120) -> dict:
    """Open the Space at ``url``, fill the form, click Generate and wait for the images and FITS
    links. Returns the images' sources and natural sizes, the FITS links and the request text
    (or the error the page shows)."""
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    paths = chromium_paths()
    if paths is None:
        raise FileNotFoundError("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=paths[1]))
    try:
        driver.get(url)
        wait = WebDriverWait(driver, timeout)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#generate"))

        def fill(selector, value):
            field = driver.find_element(By.CSS_SELECTOR, selector)
            field.send_keys(Keys.CONTROL, "a")
            field.send_keys(str(value))

        if strength is not None:
            fill("#strength input", strength)
            driver.find_element(By.CSS_SELECTOR, "#strength input").send_keys(Keys.ENTER)
        if position:
            fill("#position textarea", position)
        fill("#seed input", seed)
        fill("#steps input[type=number]", steps)
        driver.find_element(By.CSS_SELECTOR, "#seed input").send_keys(Keys.TAB)
        driver.find_element(By.CSS_SELECTOR, "#generate").click()

        def finished(d):
            errors = [e.get_attribute("textContent").strip() for e in d.find_elements(By.CSS_SELECTOR, ".toast-body")]
            images = d.find_elements(By.CSS_SELECTOR, "#images img")
            links = d.find_elements(By.CSS_SELECTOR, "#fits a[href]")
            loaded = images and all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
                                    for i in images)
            return {"error": " ".join(errors)} if errors else (loaded and links and (images, links))

        outcome = wait.until(finished)
        if isinstance(outcome, dict):
            return outcome
        images, links = outcome
        result = {"images": [i.get_attribute("src") for i in images],
                  "sizes": [driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", i)
                            for i in images],
                  "fits": [a.get_attribute("href") for a in links],
                  "request": driver.find_element(By.CSS_SELECTOR, "#request textarea").get_attribute("value")}
        if screenshot:  # in 256 colours: a third of the bytes, for the README
            from io import BytesIO

            from PIL import Image

            page = Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB").quantize(256)
            page.save(screenshot, format="PNG", optimize=True)
        return result
    finally:
        driver.quit()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--screenshot", required=True, help="PNG of the page after generating")
    p.add_argument("--strength", default="M2.5")
    p.add_argument("--position", default="S15W30")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args(argv)
    demo, url = start_space()
    try:
        result = generate_in_browser(url, args.strength, args.position, args.seed, args.steps, args.screenshot)
    finally:
        demo.close()
    print(result.get("error") or f"wrote {args.screenshot}: {len(result['images'])} images, {len(result['fits'])} FITS")
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
