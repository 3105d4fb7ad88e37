"""The web page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium)
against a real ``bentoml serve`` of the tiny BART with API keys on: the page loads without a key, asks for one,
then summarizes, shows how, and takes a rating with a corrected summary, which ``python -m feedback export``
then finds in the service's feedback store. One service for the module.

The screenshot goes to $SUMMARIZER_ARTIFACTS_DIR when set (CI keeps it), else to the test's tmp_path; its path
is printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness import bentoml_serve

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver: "
                                       "apt-get install chromium chromium-driver")

KEY = "page-key-0123456789abcdef"
DIALOGUE = "Amanda: I baked cookies. Do you want some?\nJerry: Sure!\nAmanda: I'll bring you tomorrow :-)"
CORRECTED = "Amanda baked cookies and will bring Jerry some tomorrow."
WAIT_S = 90  # a summary of the tiny model on two busy cores


@pytest.fixture(scope="module")
def feedback_store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feedback") / "feedback.sqlite3"


@pytest.fixture(scope="module")
def server(tiny_model, serve_env, feedback_store, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = serve_env(tiny_model, SUMMARIZER_API_KEYS=KEY, SUMMARIZER_FEEDBACK_PATH=str(feedback_store),
                    SUMMARIZER_FEEDBACK_RETAIN_TEXT="true")
    with bentoml_serve(log, env) as served:
        yield served
    assert KEY not in log.read_text(errors="replace"), "the API key reached the service's log"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1800", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout_s: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(condition)


def text_of(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def visible(driver, element_id: str) -> bool:
    return driver.find_element("id", element_id).is_displayed()


def labelled(driver, element_id: str):
    """The form control ``element_id``, checked to have a label that names it (what a screen reader reads)."""
    assert driver.find_element("css selector", f"label[for='{element_id}']").text.strip()
    return driver.find_element("id", element_id)


def artifacts_dir(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("SUMMARIZER_ARTIFACTS_DIR") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def assert_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert width >= 800 and height >= 600 and len(data) > 10_000, (width, height, len(data))
    return width, height


def test_the_page_summarizes_and_takes_feedback_with_an_api_key(server, browser, feedback_store, tmp_path):
    # The page and its files load without a key; the API does not answer without one, and the page says so.
    browser.get(server.url + "/")
    assert browser.current_url == server.url + "/ui/"  # GET / leads to the page
    assert browser.title == "Dialogue summarizer"
    wait_for(browser, lambda d: "API key" in text_of(d, "model-info"))
    labelled(browser, "dialogue").send_keys(DIALOGUE)
    browser.find_element("id", "summarize").click()
    wait_for(browser, lambda d: visible(d, "error"))
    assert "enter your API key" in text_of(browser, "error-message")
    assert "unauthorized" in text_of(browser, "error-details")

    # With the key: the model's details, then the summary and how it was made.
    labelled(browser, "api-key").send_keys(KEY)
    browser.find_element("id", "save-key").click()
    wait_for(browser, lambda d: text_of(d, "model-info").startswith("Model "))
    assert "reads up to 1024 tokens" in text_of(browser, "model-info")
    browser.find_element("css selector", "#settings > summary").click()
    labelled(browser, "num_beams").send_keys("1")
    labelled(browser, "max_new_tokens").send_keys("8")
    # The range from /docs.json (read after GET /model).
    wait_for(browser, lambda d: d.find_element("id", "num_beams").get_attribute("max") == "8", 30)
    browser.find_element("id", "summarize").click()
    wait_for(browser, lambda d: visible(d, "result"))
    assert not visible(browser, "error")
    summary = text_of(browser, "summary-text")
    assert summary.strip()
    assert text_of(browser, "detail-backend") == "onnx-cpu"
    assert int(text_of(browser, "detail-input_tokens")) > 10
    assert 0 < int(text_of(browser, "detail-output_tokens")) <= 8
    assert text_of(browser, "detail-truncated") == "no"
    assert text_of(browser, "detail-cached") == "no"
    assert text_of(browser, "detail-duration_ms").endswith(" ms")
    request_id = text_of(browser, "detail-request_id")
    assert len(request_id) == 32

    # Rated bad and corrected (the scale is POST /feedback's, from /docs.json); the service confirms.
    ratings = [r.get_attribute("value") for r in browser.find_elements("css selector", "#ratings input[type=radio]")]
    assert ratings == ['"good"', '"bad"']
    labelled(browser, "rating-bad").click()
    assert browser.find_element("id", "rating-bad").is_selected()
    assert labelled(browser, "corrected-summary").get_attribute("maxlength") == "4000"
    browser.find_element("id", "corrected-summary").send_keys(CORRECTED)
    labelled(browser, "feedback-comment").send_keys("tested from the page")
    browser.find_element("id", "send-feedback").click()
    wait_for(browser, lambda d: text_of(d, "feedback-status").startswith(("Thank you", "Feedback not recorded")))
    assert text_of(browser, "feedback-status").startswith("Thank you"), text_of(browser, "feedback-status")
    assert request_id in text_of(browser, "feedback-status")

    screenshot = artifacts_dir(tmp_path) / "ui-page.png"
    browser.set_window_size(1280, browser.execute_script("return document.documentElement.scrollHeight") + 140)
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(screenshot))  # the whole page
    width, height = assert_png(screenshot)
    print(f"screenshot of the page: {screenshot} ({width}x{height})")

    # The key stayed in the tab's sessionStorage; the page itself never put it in a URL.
    assert browser.execute_script("return sessionStorage.getItem('summarizer.apiKey')") == KEY
    assert KEY not in browser.current_url

    # What the page sent is what the fine-tuning export finds: the dialogue and the corrected summary.
    exported = subprocess.run([sys.executable, "-m", "feedback", "export", "--path", str(feedback_store)],
                              capture_output=True, text=True, timeout=120, check=True)
    [pair] = [json.loads(line) for line in exported.stdout.splitlines()]
    assert (pair["request_id"], pair["rating"], pair["source"]) == (request_id, "bad", "corrected")
    assert (pair["dialogue"], pair["summary"]) == (DIALOGUE, CORRECTED)


# What the service may answer that the tiny model cannot be made to produce: crafted answers for the page's own
# fetch() (the page's rendering in the real browser; the service is not involved).
STUB = """
const [path, status, headers, body] = arguments;
const real = window.fetch;
window.fetch = (url, init) => String(url).endsWith(path)
  ? Promise.resolve(new Response(JSON.stringify(body), {status, headers: {"Content-Type": "application/json",
                                                                           ...headers}}))
  : real(url, init);
"""


def stub_answer(driver, path: str, status: int, body: dict, headers: dict | None = None) -> None:
    driver.execute_script(STUB, path, status, headers or {}, body)


def test_the_page_escapes_what_it_shows_and_shows_fields_it_does_not_know(server, browser, tmp_path):
    browser.get(server.url + "/ui/")
    hostile = '<img id="injected" src="x" onerror="document.title=\'pwned\'">'
    stub_answer(browser, "/summarize", 200, {
        "summary": hostile, "model": "m:1", "backend": "onnx-cpu", "input_tokens": 1024, "output_tokens": 40,
        "truncated": True, "fallback": False, "duration_ms": 1234.5, "request_id": "a" * 32, "cached": True,
        "warnings": [{"code": "language", "message": "<b>de</b>: the model was trained on English"}],
        "long_dialogue": {"windows": 3, "rounds": 1, "method": "windows, then combined"}, "not_this_time": None,
    })
    upload = tmp_path / "chat.txt"  # the dialogue from a file this time
    upload.write_text(DIALOGUE + "\n", encoding="utf-8")
    labelled(browser, "dialogue-file").send_keys(str(upload))
    wait_for(browser, lambda d: text_of(d, "file-status").startswith("Loaded chat.txt"))
    assert browser.find_element("id", "dialogue").get_property("value") == DIALOGUE + "\n"
    browser.find_element("id", "summarize").click()
    wait_for(browser, lambda d: visible(d, "result"))
    assert text_of(browser, "summary-text") == hostile  # shown as text, not markup
    assert not browser.find_elements("id", "injected") and browser.title == "Dialogue summarizer"
    assert text_of(browser, "warnings") == "language: <b>de</b>: the model was trained on English"
    assert text_of(browser, "detail-truncated").startswith("yes: the dialogue was cut")
    assert text_of(browser, "detail-cached") == "yes"
    assert text_of(browser, "detail-duration_ms") == "1235 ms"
    long = text_of(browser, "detail-long_dialogue")  # a field the page has no label for: shown by its name
    assert "windows" in long and "3" in long and "windows, then combined" in long
    assert not browser.find_elements("id", "detail-not_this_time")  # a field that is null is not shown


@pytest.mark.parametrize("status, code, retry_after, says", [
    (503, "overloaded", "1", "Try again in 1 s."),
    (429, "rate_limited", "7", "Try again in 7 s."),
    (400, "invalid_request", None, "num_beams must be at most 8"),
])
def test_the_page_shows_error_answers_readably(server, browser, status, code, retry_after, says):
    browser.get(server.url + "/ui/")
    body = {"code": code, "message": "num_beams must be at most 8" if status == 400 else "busy",
            "field": "generation.num_beams" if status == 400 else None, "allowed": None}
    stub_answer(browser, "/summarize", status, body, {"Retry-After": retry_after} if retry_after else {})
    labelled(browser, "dialogue").send_keys(DIALOGUE)
    browser.find_element("id", "summarize").click()
    wait_for(browser, lambda d: visible(d, "error"))
    assert says in text_of(browser, "error-message")
    details = text_of(browser, "error-details")
    assert f"HTTP {status}" in details and code in details
    if status == 400:
        assert "generation.num_beams" in details
    assert not visible(browser, "result")


def test_the_page_is_public_and_allows_nothing_from_elsewhere(server):
    page = httpx.get(server.url + "/ui/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "http://" not in page.text and "https://" not in page.text  # nothing outside the Bento
    for asset in ("app.js", "style.css"):
        answer = httpx.get(f"{server.url}/ui/{asset}", timeout=30)
        assert answer.status_code == 200 and "https://" not in answer.text
    assert "innerHTML" not in httpx.get(server.url + "/ui/app.js", timeout=30).text
    # The API and Swagger are not public: the page's calls carry the key.
    assert httpx.get(server.url + "/docs", timeout=30).status_code == 401
    assert httpx.get(server.url + "/docs", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).status_code == 200
    assert httpx.post(server.url + "/ui/", json={}, timeout=30).status_code == 401
    assert httpx.get(server.url + "/ui/nothing.js", timeout=30).json()["code"] == "not_found"
