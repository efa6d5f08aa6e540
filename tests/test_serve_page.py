"""The page at / in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium):
it translates a typed sentence and draws the attention as a table of target rows x source columns."""

import shutil

import numpy as np
import pytest

from conftest import call, serving
from nmt import Translator

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("no browser: the page test needs Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="the page test needs selenium: pip install -e '.[dev]'")
mpl_image = pytest.importorskip("matplotlib.image", reason="the page test reads its screenshot with matplotlib: "
                                                         "pip install -e '.[dev]'")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(tmp_path, monkeypatch):
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=900,700",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def type_and_translate(browser, url: str, sentence: str, ready: str) -> None:
    """Open the page, type `sentence`, press Translate and wait for the CSS selector `ready`."""
    browser.get(url + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: "src → tgt" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "source").send_keys(sentence)
    browser.find_element(By.ID, "translate").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))


def test_page_translates_and_draws_the_attention(reverse_run, served, browser, tmp_path):
    sentence = "w3 w1 w4 w1 w5"
    translator = Translator.load(reverse_run[0] / "run")
    (hyp,), = translator.translate_hyps([sentence], return_attention=True)
    expected_text = translator.translate([sentence])[0]
    type_and_translate(browser, served.url, sentence, "#output li .text")
    assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#output li .text")] == [expected_text]
    table = browser.find_element(By.ID, "heatmap")
    assert table.is_displayed()
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    columns = len(translator.source_pieces(sentence))
    assert len(rows) == len(hyp.tokens) + hyp.finished == hyp.attention.shape[0]
    assert [len(row.find_elements(By.TAG_NAME, "td")) for row in rows] == [columns] * len(rows)
    heads = [th.get_attribute("textContent") for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert heads[1:] == translator.source_pieces(sentence)
    labels = [row.find_element(By.TAG_NAME, "th").get_attribute("textContent") for row in rows]
    assert labels == translator.tokenizer.tgt_pieces(hyp.tokens) + ["</s>"] * hyp.finished
    assert browser.find_element(By.ID, "error").text == ""
    assert_screenshot_shows_the_weights(browser, table, tmp_path / "page.png")


# The page paints a cell rgba(33, 84, 166, weight) over the white page: darker is more weight.
CELL_RGB, PAGE_RGB = np.array([33, 84, 166]) / 255, np.ones(3)


def assert_screenshot_shows_the_weights(browser, table, path):
    """The screenshot is the window's viewport, and at the centre of each heatmap cell it shows the
    colour of that cell's weight (data-weight, the API's)."""
    browser.execute_script("arguments[0].scrollIntoView()", table)
    view = browser.execute_script(
        "return {width: innerWidth, height: innerHeight, ratio: devicePixelRatio, cells: "
        "[...document.querySelectorAll('#heatmap td')].map(td => {const r = td.getBoundingClientRect(); "
        "return [r.left + r.width / 2, r.top + r.height / 2, Number(td.dataset.weight)];})}")
    assert browser.get_screenshot_as_file(str(path))
    pixels = mpl_image.imread(str(path))[..., :3]  # (height, width, RGB) in [0, 1]
    ratio = view["ratio"]
    assert pixels.shape[:2] == (round(view["height"] * ratio), round(view["width"] * ratio))
    weights = np.array([w for _, _, w in view["cells"]])
    assert weights.min() < 0.1 and weights.max() > 0.5  # light and dark cells to tell apart
    for x, y, weight in view["cells"]:
        assert 0 <= x < view["width"] and 0 <= y < view["height"], "a cell outside the screenshot"
        expected = weight * CELL_RGB + (1 - weight) * PAGE_RGB
        np.testing.assert_allclose(pixels[int(y * ratio), int(x * ratio)], expected, atol=3 / 255)


def test_a_non_square_heatmap_holds_the_apis_weights_and_html_stays_text(served, browser):
    """Target rows x source columns, each cell the API's weight: a transposed table cannot pass, as
    the sentence's attention is not symmetric (the reverse-copy model's may be square: its output is
    as long as its input). The HTML characters typed in come back as text."""
    sentence = "w3 w10 w11 w9 <b>&</b>"
    status, answer = call(served.url + "/translate", {"text": sentence, "attention": True})
    (expected,) = answer["translations"]
    weights = np.array(expected["attention"])
    assert status == 200
    assert weights.shape[0] != weights.shape[1] or not np.allclose(weights, weights.T, atol=1e-3), weights
    type_and_translate(browser, served.url, sentence, "#heatmap tbody tr")
    table = browser.find_element(By.ID, "heatmap")
    heads = [th.get_attribute("textContent") for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    assert heads[1:] == expected["source_tokens"]
    cells = [[float(td.get_attribute("data-weight")) for td in row.find_elements(By.TAG_NAME, "td")]
             for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    np.testing.assert_allclose(np.array(cells), weights, atol=1e-6)
    assert browser.find_elements(By.CSS_SELECTOR, "#output b, #heatmap b") == []  # nothing typed became markup
    assert browser.find_element(By.ID, "error").text == ""


def test_a_server_with_an_api_key_gets_it_from_the_page(reverse_run, browser, tmp_path):
    (tmp_path / "key").write_text("s3cret\n")
    with serving(reverse_run[0] / "run", tmp_path / "serve.log", "--api-key-file", str(tmp_path / "key")) as server:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: "API key" in d.find_element(By.ID, "model").text)
        key = browser.find_element(By.ID, "key")
        assert key.is_displayed() and key.get_attribute("type") == "password"
        key.send_keys("s3cret")
        browser.find_element(By.ID, "source").click()  # the key field's change event
        wait.until(lambda d: "src → tgt" in d.find_element(By.ID, "model").text)
        browser.find_element(By.ID, "source").send_keys("w3 w1 w4")
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#output li .text"))
        expected = Translator.load(reverse_run[0] / "run").translate(["w3 w1 w4"])
        assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#output li .text")] == expected
        assert browser.find_element(By.ID, "error").text == ""
