"""The page in headless Chromium: upload, see HC, drag an axis handle, download the CSV."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import threading
import time

import pytest

pytest.importorskip("selenium")
pytest.importorskip("uvicorn")


CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMEDRIVER and CHROMIUM), reason="Chromium not installed"),
]


@pytest.fixture(scope="module")
def corrections(tmp_path_factory):
    return tmp_path_factory.mktemp("corrections")


@pytest.fixture(scope="module")
def server(corrections):
    import uvicorn

    from fetalhc.inference.measurer import HeadMeasurer
    from fetalhc.serve.app import ServiceConfig, create_app

    app = create_app(HeadMeasurer(backend="torch"), ServiceConfig(corrections_dir=corrections))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture()
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
        "--disable-gpu",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(tmp_path / "downloads"),
            "download.prompt_for_download": False,
        },
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1280, 800)
    yield driver
    driver.quit()


def test_measure_correct_and_export(server, browser, sample, tmp_path, corrections, measurer):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server)
    wait = WebDriverWait(browser, 60)
    browser.find_element(By.ID, "pixel-size").send_keys("0.133961232503")
    browser.find_element(By.ID, "file").send_keys(str(sample / "test_set" / "180_HC.png"))
    hc = browser.find_element(By.ID, "hc-value")
    wait.until(lambda d: hc.text not in ("", "—"))
    before = float(hc.text)
    # the page shows what the library measures (the service runs ONNX, this PyTorch)
    expected = measurer.measure(sample / "test_set" / "180_HC.png", 0.133961232503)
    assert before == pytest.approx(expected.hc_mm, abs=0.06)
    # the model's 95 % interval beside HC and GA, around the value shown
    low, high = (float(v) for v in browser.find_element(By.ID, "hc-range").text[1:-1].split("–"))
    assert low < before < high and high - low < 30
    assert "–" in browser.find_element(By.ID, "ga-range").text
    assert browser.find_element(By.ID, "quality").text == expected.quality
    # clinical outputs: diameters, cephalic index, INTERGROWTH GA, centile for a known GA
    browser.find_element(By.ID, "ga").send_keys("20+3")
    centile = browser.find_element(By.ID, "centile").text
    assert "INTERGROWTH-21st" in centile and 0 <= float(centile.split()[0]) <= 100
    ofd, bpd = (float(v) for v in browser.find_element(By.ID, "diameters").text[:-3].split("/"))
    ci = float(browser.find_element(By.ID, "ci").text.split()[0])
    assert ci == pytest.approx(100 * bpd / ofd, abs=0.2)

    # drag the end of the long axis outwards by 40 screen pixels
    canvas = browser.find_element(By.ID, "view")
    # wholly in view, so that offsets from the element's centre land where computed
    browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", canvas)
    handles = browser.execute_script("return window.fetalhc.handlePositions()")
    x, y = handles["a"]
    rect = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.width / arguments[0].width, r.width, r.height];",
        canvas,
    )
    k, width, height = rect
    dx = 40 if handles["a"][0] >= handles["centre"][0] else -40
    ActionChains(browser).move_to_element_with_offset(
        canvas, int(x * k - width / 2), int(y * k - height / 2)
    ).click_and_hold().move_by_offset(dx, 0).release().perform()
    wait.until(lambda d: hc.text != f"{before:.1f}")
    after = float(hc.text)
    assert after != pytest.approx(before, abs=0.05)
    assert "edited by hand" in browser.find_element(By.ID, "edited").text
    assert browser.find_element(By.ID, "hc-range").text == ""  # the model's, not the edit's

    # save the correction: the image and both ellipses land in the corrections folder
    browser.find_element(By.ID, "correction-key").send_keys("patient 17")
    browser.find_element(By.ID, "save-correction").click()
    wait.until(lambda d: "correction saved" in d.find_element(By.ID, "status").text)
    (record_path,) = corrections.glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["final_hc_mm"] == pytest.approx(after, abs=0.06)
    assert record["original_hc_mm"] == pytest.approx(before, abs=0.06)
    assert record["final"]["a"] != pytest.approx(record["original"]["a"], abs=0.5)
    assert record["part"] in ("adapt", "held-back") and record["key_sha256"]
    assert "patient" not in record_path.read_text()  # the key itself is not kept
    assert (corrections / record["image"]).stat().st_size > 1000

    browser.save_screenshot(str(tmp_path / "serve.png"))
    browser.find_element(By.ID, "download-csv").click()
    target = tmp_path / "downloads" / "fetalhc_measurements.csv"
    deadline = time.time() + 20
    while not target.exists() and time.time() < deadline:
        time.sleep(0.2)
    rows = list(csv.DictReader(open(target)))
    assert len(rows) == 1 and rows[0]["filename"] == "180_HC.png"
    assert rows[0]["edited"] == "yes"
    assert float(rows[0]["hc_mm"]) == pytest.approx(after, abs=0.06)
    assert float(rows[0]["model_hc_mm"]) == pytest.approx(before, abs=0.06)


def test_clear_message_for_a_file_that_is_not_an_image(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    browser.get(server)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    error = browser.find_element(By.ID, "error")
    WebDriverWait(browser, 30).until(lambda d: error.text)
    assert "not an image" in error.text


def test_a_cine_loop_opens_on_the_chosen_frame_and_steps(server, browser, sample, tmp_path):
    import cv2
    import numpy as np
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.dicom_helpers import make_dicom

    head = cv2.imread(str(sample / "test_set" / "180_HC.png"), cv2.IMREAD_GRAYSCALE)
    blank = np.full_like(head, 40)
    loop = make_dicom(tmp_path / "loop.dcm", [blank, head, blank], region_cm=0.0133961232503)
    browser.get(server)
    browser.find_element(By.ID, "file").send_keys(str(loop))
    label = browser.find_element(By.ID, "frame-label")
    WebDriverWait(browser, 120).until(lambda d: label.text)
    assert label.text.startswith("frame 2 ")  # the chosen frame first
    hc = browser.find_element(By.ID, "hc-value").text
    assert float(hc) > 100
    browser.find_element(By.ID, "frame-next").click()
    assert browser.find_element(By.ID, "frame-label").text.startswith("frame 3 ")
    assert browser.find_element(By.ID, "hc-value").text == "—"  # a blank frame: no head
    browser.find_element(By.ID, "frame-prev").click()
    browser.find_element(By.ID, "frame-prev").click()
    assert browser.find_element(By.ID, "frame-label").text.startswith("frame 1 ")
    assert browser.find_element(By.ID, "frame-prev").get_attribute("disabled")
