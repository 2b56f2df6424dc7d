"""The web studio in a real browser: Debian's Chromium, headless, driven by Selenium through chromedriver.

Uploads a photo, waits for the stylized result (the photo's size, different from it), moves a blend slider
and checks that the result changes. The page is static files calling the REST API; the server has no page
logic."""

from __future__ import annotations

import os
import shutil
import time

import httpx
import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("chromium and chromium-driver are missing (setup.sh installs them with apt-get)")
    pytest.skip("Debian's chromium and chromium-driver are not installed (setup.sh installs them)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1100",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield driver
    driver.quit()


def _shots(tmp_path):
    """Where screenshots go: a temporary folder, or docs/studio when STYLECAST_SCREENSHOTS=1 (to refresh
    the README's pictures of each view)."""
    from pathlib import Path

    if os.environ.get("STYLECAST_SCREENSHOTS") == "1":
        folder = Path(__file__).resolve().parent.parent / "docs" / "studio"
        folder.mkdir(exist_ok=True)
        return folder
    return tmp_path


def _view(browser, section: str, path) -> None:
    """A screenshot of one section of the page."""
    from selenium.webdriver.common.by import By

    element = browser.find_element(By.ID, section)
    browser.execute_script("arguments[0].scrollIntoView()", element)
    element.screenshot(str(path))


def _wait(driver, condition, timeout: float = 60.0, what: str = ""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.1)
    status = driver.execute_script("return document.getElementById('timing').textContent")
    raise TimeoutError(f"timed out waiting for {what or condition}; status: {status}")


PIXELS_OF = """
const c = document.querySelector(arguments[0]);
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
return [c.width, c.height, Array.from(d.filter((_, i) => i % 4 !== 3))];
"""

PIXELS = """
const c = document.getElementById(arguments[0]);
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
return [c.width, c.height, Array.from(d.filter((_, i) => i % 4 !== 3))];
"""


def test_get_root_returns_the_page(http_url):
    r = httpx.get(f"http://{http_url}/")
    assert r.status_code == 200 and "stylecast studio" in r.text and "studio.js" in r.text
    assert httpx.get(f"http://{http_url}/studio.js").status_code == 200


def test_upload_stylize_and_blend_in_a_real_browser(browser, http_url, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from stylecast.nets.images import bundled_photos

    photo = tmp_path / "photo.png"
    Image.open(dict(bundled_photos())["skimage_coffee"]).convert("RGB").resize((300, 200)).save(photo)
    browser.get(f"http://{http_url}/")
    _wait(browser, "return document.querySelectorAll('#styles input').length", what="style sliders")
    assert browser.execute_script("return document.getElementById('download').hidden")  # nothing to download yet
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    _wait(browser, "return document.getElementById('timing').textContent.includes('not an image')",
          what="the refusal of a text file")
    browser.find_element(By.ID, "model").send_keys("tiny_style")
    browser.find_element(By.ID, "file").send_keys(str(photo))
    _wait(browser, "return document.getElementById('result').dataset.version === '1'", what="a stylized result")
    w, h, first = browser.execute_script(PIXELS, "result")
    pw, ph, original = browser.execute_script(PIXELS, "photo")
    assert (w, h) == (pw, ph) == (300, 200)
    assert not browser.execute_script("return document.getElementById('download').hidden")
    diff = sum(abs(a - b) for a, b in zip(first, original, strict=True)) / len(first)
    assert diff > 10, f"the result is too close to the photo: {diff:.1f} levels"
    # move the second style's slider all the way (a user's keyboard on the range input)
    slider = browser.find_elements(By.CSS_SELECTOR, "#styles input[type=range]")[1]
    slider.send_keys(Keys.END)
    _wait(browser, "return parseInt(document.getElementById('result').dataset.version) >= 2", what="a new result")
    time.sleep(1.0)  # let any queued re-stylize land
    _, _, blended = browser.execute_script(PIXELS, "result")
    change = sum(abs(a - b) for a, b in zip(blended, first, strict=True)) / len(first)
    assert change > 2, f"the blend did not change the result ({change:.2f} levels)"
    # the before/after slider: all the way left shows the photo, half way the result's left half
    compare = browser.find_element(By.ID, "compare")
    compare.send_keys(Keys.HOME)
    _, _, before = browser.execute_script(PIXELS, "result")
    assert before == original
    browser.execute_script("const c = document.getElementById('compare'); c.value = 0.5;"
                           "c.dispatchEvent(new Event('input'));")
    _, _, half = browser.execute_script(PIXELS, "result")
    row = 3 * 300
    left = lambda px: [v for y in range(200) for v in px[y * row: y * row + 3 * 140]]  # noqa: E731
    right = lambda px: [v for y in range(200) for v in px[y * row + 3 * 160: (y + 1) * row]]  # noqa: E731
    assert left(half) == left(blended) and right(half) == right(original)
    compare.send_keys(Keys.END)
    browser.save_screenshot(str(_shots(tmp_path) / "studio.png"))


def test_the_api_documents_itself(browser, http_url, server):
    """/openapi.json lists every route the server serves; /docs renders it (Swagger UI from its package)."""
    from starlette.routing import Mount, Route
    from stylecast.server.http.openapi import ROUTES

    spec = httpx.get(f"http://{http_url}/openapi.json").json()
    assert "post" in spec["paths"]["/v2/models/{model}/infer"]
    served = {r.path.replace(":str", "") for r in server.http.app.routes if isinstance(r, Route)
              and r.path.startswith("/v2")}
    assert served == set(ROUTES), served ^ set(ROUTES)
    assert not [r for r in server.http.app.routes if isinstance(r, Mount) and r.path.startswith("/v2")]
    assert httpx.get(f"http://{http_url}/favicon.ico").headers["content-type"].startswith("image/")
    browser.get(f"http://{http_url}/docs")
    summaries = _wait(browser, "const s = [...document.querySelectorAll('.opblock-summary-path')]"
                      ".map(e => e.textContent); return s.length > 20 && s", what="the rendered API")
    assert any("/v2/models/{model}/infer" in s.replace("\u200b", "") for s in summaries), summaries[:5]


def test_every_technique_has_a_form_and_runs_in_the_browser(browser, sidecar_server, tmp_path):
    """The page offers every technique of the repository index, with a form from its served config; an
    attribution, a gallery technique and the filters show their pictures; DeepDream streams progress and is
    cancelled; a file that is not an image is refused with a visible error."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from stylecast.nets.images import bundled_photos

    base = f"http://127.0.0.1:{sidecar_server.http.port}"
    techniques = {m["name"] for m in httpx.post(f"{base}/v2/repository/index", json={}).json()
                  if m.get("state") == "READY"}
    photo = tmp_path / "cat.png"
    Image.open(dict(bundled_photos())["skimage_chelsea"]).convert("RGB").resize((160, 120)).save(photo)
    browser.get(base + "/")
    offered = _wait(browser, "const o = [...document.querySelectorAll('#tech option')].map(e => e.value);"
                    "return o.length > 10 && o", what="the technique list")
    assert set(offered) == techniques
    browser.find_element(By.ID, "file").send_keys(str(photo))
    dream_steps = browser.find_element(By.ID, "dream-steps")  # the explain panel's streamed DeepDream
    dream_steps.clear()
    dream_steps.send_keys("2")
    browser.find_element(By.ID, "run-dream").click()
    _wait(browser, "return document.getElementById('dream-progress').textContent === 'done: 2 steps'"
          " && document.getElementById('dream').width > 0", timeout=120, what="the streamed DeepDream")
    tech = Select(browser.find_element(By.ID, "tech"))

    shots = _shots(tmp_path)

    def run(name: str, output: str, values: dict | None = None) -> None:
        status = browser.find_element(By.ID, "tech-status")
        tech.select_by_value(name)
        for key, value in (values or {}).items():
            box = browser.find_element(By.CSS_SELECTOR, f"#tech-form [data-input='{key}'], "
                                                        f"#tech-form [data-param='{key}']")
            box.clear()
            box.send_keys(str(value))
        browser.find_element(By.ID, "tech-run").click()
        _wait(browser, "const s = document.getElementById('tech-status').textContent;"
              "return s.startsWith('done') || s.startsWith('error')", timeout=120, what=f"{name}'s answer")
        assert status.text.startswith("done"), status.text
        query = f"#tech-result canvas[data-output='{output}']"
        lit = browser.execute_script(f"const c = document.querySelector(\"{query}\");"
                                     "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                                     "return c.width * c.height > 100 && d.some((v, i) => i % 4 !== 3 && v > 0);")
        assert lit, f"{name} showed an empty {output}"
        _view(browser, "techniques", shots / f"{name}.png")

    run("saliency", "overlay")
    run("knn", "picture", {"k": 4})
    ranked = browser.execute_script("return [...document.querySelectorAll('#tech-result table.ranked tbody tr')]"
                                    ".map(r => [...r.cells].map(c => c.textContent))")
    distances = [float(r[2]) for r in ranked]
    assert len(ranked) == 4 and all(r[1] for r in ranked) and distances == sorted(distances), ranked
    run("filters", "picture", {"network": "vgg16"})
    run("segmentation", "overlay")
    run("fooling", "perturbation", {"target": 1})  # before / after, both labelled, and the change magnified
    captions = browser.execute_script("return [...document.querySelectorAll('#tech-result figcaption')]"
                                      ".map(c => c.textContent)")
    assert captions[0] == "image: goldfish" and captions[1].startswith("original: ") and "cat" in captions[1], captions
    assert captions[2] == "perturbation", captions
    tech.select_by_value("deepdream")
    steps = browser.find_element(By.CSS_SELECTOR, "#tech-form [data-param='steps']")
    steps.clear()
    steps.send_keys("1000")
    browser.find_element(By.ID, "tech-run").click()
    _wait(browser, "return document.getElementById('tech-status').textContent.startsWith('step')", timeout=120,
          what="DeepDream's progress")
    assert browser.execute_script("return document.getElementById('tech-progress').value") > 0
    _view(browser, "techniques", shots / "deepdream.png")
    browser.find_element(By.ID, "tech-cancel").click()
    _wait(browser, "return document.getElementById('tech-status').textContent === 'cancelled'", what="the cancel")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    browser.find_element(By.ID, "style-file").send_keys(str(text))
    _wait(browser, "return document.getElementById('own-status').textContent.includes('not an image')",
          what="the refusal of a text file")


def test_the_split_deployments_studio_offers_the_upstream_styles(browser, tmp_path):
    """The sidecar of the split deployment (no repository of its own, --upstream at a server standing in for
    Triton with starter8): its page lists starter8's styles with their paintings' thumbnails and stylizes a
    photo with them; a bundled example photo is one click; the blend survives a switch of model."""
    from pathlib import Path

    from PIL import Image
    from selenium.webdriver.common.by import By
    from stylecast.nets.images import bundled_photos
    from stylecast.server.app import Server, ServerOptions

    root = Path(__file__).resolve().parent.parent
    up = Server(ServerOptions(model_repository=root / "model_repository", port=0, metrics_port=None))
    up.start()
    side = Server(ServerOptions(model_repository=None, port=0, metrics_port=None, http_port=0,
                                upstream=f"127.0.0.1:{up.port}", paintings=root / "styles"))
    side.start()
    try:
        photo = tmp_path / "photo.png"
        Image.open(dict(bundled_photos())["skimage_coffee"]).convert("RGB").resize((160, 120)).save(photo)
        browser.get(f"http://127.0.0.1:{side.http.port}/")
        names = _wait(browser, "const s = [...document.querySelectorAll('#styles button')].map(e => e.textContent);"
                      "return s.length >= 8 && s", what="the upstream's style sliders")
        assert "great wave" in names and "starter8" in browser.execute_script(
            "return [...document.querySelectorAll('#model option')].map(o => o.value)")
        browser.find_element(By.ID, "file").send_keys(str(photo))
        _wait(browser, "return document.getElementById('result').dataset.version === '1'", what="a stylized result")
        w, h, px = browser.execute_script(PIXELS, "result")
        _, _, original = browser.execute_script(PIXELS, "photo")
        assert sum(abs(a - b) for a, b in zip(px, original, strict=True)) / len(px) > 10
        assert (w, h) == (160, 120)
        thumbs = _wait(browser, "const t = [...document.querySelectorAll('#styles img.thumb')];"
                       "return t.length === 8 && t.every(i => i.complete && i.naturalWidth > 0) && t.length",
                       what="the paintings' thumbnails")
        assert thumbs == 8
        base = f"http://127.0.0.1:{side.http.port}"
        assert httpx.get(f"{base}/paintings/great_wave.jpg").headers["content-type"] == "image/jpeg"
        assert httpx.get(f"{base}/paintings/..%2Fmodel_repository%2Fstarter8%2Fconfig.pbtxt").status_code == 404
        # the blend by name survives a switch to the other model holding the same styles
        browser.find_elements(By.CSS_SELECTOR, "#styles button")[2].click()
        browser.find_element(By.ID, "model").send_keys("starter8_fast")
        weights = _wait(browser, "return document.getElementById('model').value === 'starter8_fast' &&"
                        "[...document.querySelectorAll('#styles input')].map(s => parseFloat(s.value))",
                        what="the other model's sliders")
        assert weights[2] == 1 and sum(weights) == 1, weights
        # an example photo, one click
        version = int(browser.execute_script("return document.getElementById('result').dataset.version"))
        _wait(browser, "return document.querySelectorAll('#examples img').length === 3", what="example photos")
        browser.find_element(By.CSS_SELECTOR, "#examples img[data-example=chelsea]").click()
        _wait(browser, f"return parseInt(document.getElementById('result').dataset.version) > {version}"
              " && document.getElementById('result').width === 451", what="the example's result (451 x 300)")
        browser.save_screenshot(str(_shots(tmp_path) / "split.png"))
    finally:
        side.stop(0)
        up.stop(0)


def test_your_own_style_previews_with_gatys_and_becomes_a_slider(browser, tiny_style_checkpoint, tmp_path):
    """A painting dropped on the page: a streamed Gatys preview of the photo, then "make it a real-time style"
    (learn_style on a server that allows it), after which the new style is a slider and stylizes the photo."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from stylecast.export.onnx_export import export_to_repository
    from stylecast.nets.images import bundled_photos
    from stylecast.server.app import Server, ServerOptions

    from tests.images import STYLES

    export_to_repository(tiny_style_checkpoint, "tiny", tmp_path / "repo")
    srv = Server(ServerOptions(model_repository=tmp_path / "repo", port=0, metrics_port=None, http_port=0,
                               sidecar=True, allow_learning=True, max_message_mb=64))
    srv.start()
    try:
        photo, painting = tmp_path / "photo.png", tmp_path / "painting.png"
        Image.open(dict(bundled_photos())["skimage_coffee"]).convert("RGB").resize((96, 72)).save(photo)
        Image.open(STYLES / "great_wave.jpg").convert("RGB").resize((120, 80)).save(painting)
        browser.get(f"http://127.0.0.1:{srv.http.port}/")
        _wait(browser, "return document.querySelectorAll('#styles button').length === 3", what="tiny's sliders")
        browser.find_element(By.ID, "file").send_keys(str(photo))
        _wait(browser, "return document.getElementById('result').dataset.version === '1'", what="a first result")
        for box, value in (("own-steps", 6), ("own-train-steps", 2), ("own-name", "wave")):
            element = browser.find_element(By.ID, box)
            element.clear()
            element.send_keys(str(value))
        browser.find_element(By.ID, "style-file").send_keys(str(painting))
        _wait(browser, "return document.getElementById('own-status').textContent.startsWith('done')"
              " && document.querySelector('#own-result canvas')", timeout=120, what="the Gatys preview")
        w, h, px = browser.execute_script(PIXELS_OF, "#own-result canvas")
        assert w * h > 100 and max(px) - min(px) > 30, "the preview is blank"
        _view(browser, "own", _shots(tmp_path) / "own_style.png")
        version = int(browser.execute_script("return document.getElementById('result').dataset.version"))
        browser.find_element(By.ID, "own-learn").click()
        names = _wait(browser, "const s = [...document.querySelectorAll('#styles button')].map(e => e.textContent);"
                      "return s.length === 4 && s", timeout=180, what="the new style's slider")
        assert names[-1] == "wave"
        weights = browser.execute_script("return [...document.querySelectorAll('#styles input')].map(s => +s.value)")
        assert weights == [0, 0, 0, 1], weights
        _wait(browser, "const t = document.querySelectorAll('#styles .style-row')[3].querySelector('img.thumb');"
              "return t && t.complete && t.naturalWidth > 0", what="the new style's thumbnail (its painting)")
        _wait(browser, f"return parseInt(document.getElementById('result').dataset.version) > {version}",
              what="the photo stylized with the new style")
        assert browser.execute_script("return document.getElementById('own-status').textContent").startswith("done")
    finally:
        srv.stop(0)
