"""The viewer page in a real browser: Debian's Chromium driven by Selenium (chromium-driver).

The page loads with no console error, shows a frame, scrubbing changes the frame, its headers
carry a strict Content-Security-Policy, and a page from another origin still gets nothing.
"""

from __future__ import annotations

import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from flipedit_previewd.demo.fixtures import make_indexed_video
from tests.support.helpers import build_project, wait_for

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="no browser: scripts/setup.sh installs Debian's chromium and chromium-driver"
)


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium'}",  # its profile and crash reports in the test's folder, not ~
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def daemon(start_daemon: Any, tmp_path: Path) -> Any:
    video = make_indexed_video(tmp_path / "indexed.mp4", frames=90)
    db = tmp_path / "project.sqlite"
    build_project(
        db, 3, [{"name": "v", "order": 0, "clips": [{"source": video, "type": "video", "start": 0, "end": 3000}]}]
    )
    return start_daemon("--project", str(db))


def frame_shown(driver: Any) -> tuple[str, bytes]:
    image = driver.find_element("id", "frame")
    assert wait_for(
        lambda: driver.execute_script(
            "const i = document.getElementById('frame'); return i.complete && i.naturalWidth > 0;"
        ),
        10,
    )
    return image.get_attribute("src"), image.screenshot_as_png


def test_the_page_shows_a_frame_and_scrubbing_changes_it(browser: Any, daemon: Any) -> None:
    page = requests.get(daemon.url + "/", headers={"Accept": "text/html"}, timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert (
        "default-src 'none'" in page.headers["Content-Security-Policy"]
        and page.headers["X-Content-Type-Options"] == "nosniff"
    )
    assert requests.get(daemon.url + "/", timeout=5).json()["service"] == "flipedit-previewd"  # tools still get JSON
    browser.get(daemon.url + "/")
    first_src, first = frame_shown(browser)
    assert "/get_frame/0?" in first_src
    assert wait_for(lambda: browser.find_element("id", "status").text == "ok", 10)
    assert wait_for(lambda: browser.find_elements("css selector", "#tracks .clip"), 10)  # the clip as a bar
    browser.execute_script(
        "const s = document.getElementById('scrub'); s.value = '60'; s.dispatchEvent(new Event('input'));"
    )
    assert wait_for(lambda: "/get_frame/60?" in frame_shown(browser)[0], 10)
    assert wait_for(lambda: frame_shown(browser)[1] != first, 10)
    assert wait_for(lambda: browser.find_elements("css selector", "#events li"), 10)  # the last journal events
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    assert "access_denied" not in daemon.log()  # the page's own requests were all let through


class OtherOrigin(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = (
            f"<!doctype html><title>other</title><img id=i src='{self.target}/get_frame/0'"
            f" onload=\"document.title='loaded'\" onerror=\"document.title='blocked'\">"
            f"<script>fetch('{self.target}/health').then(r => document.body.dataset.fetch = 'read')"
            f".catch(() => document.body.dataset.fetch = 'refused');</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_page_from_another_origin_gets_nothing(browser: Any, daemon: Any) -> None:
    OtherOrigin.target = daemon.url
    server = ThreadingHTTPServer(("127.0.0.1", 0), OtherOrigin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        assert wait_for(lambda: browser.title == "blocked", 10), browser.title
        assert wait_for(lambda: browser.execute_script("return document.body.dataset.fetch") == "refused", 10)
        time.sleep(0.5)
        assert "Sec-Fetch-Site" in daemon.log() or "Origin" in daemon.log()  # refused by the daemon, not only by CORS
        assert daemon.health()["client_errors"]["403"] >= 2
    finally:
        server.shutdown()
        server.server_close()
