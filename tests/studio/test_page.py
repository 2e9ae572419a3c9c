"""The Studio page in headless Chromium, used as a person uses it: two photos and a broken file uploaded at once,
the divider dragged, the strength changed, everything downloaded as a zip; then a clip followed to the end and
downloaded. Screenshots of what was on screen go to `.colorflow/screenshots/studio-*.png`."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from pipelines.browser import HeadlessChromium
from pipelines.lab import rgb_to_lab8
from sandbox.clips import Clip
from sandbox.library import PhotoLibrary

pytestmark = pytest.mark.integration

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".colorflow" / "screenshots"
WAIT_S = 120


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(studio_url: str, downloads: Path) -> Iterator[WebDriver]:
    with HeadlessChromium(window_size=(1280, 1000)) as driver:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        driver.get(studio_url)
        yield driver


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], object], what: str) -> object:
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(condition, message=what)


def screenshot(driver: WebDriver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"studio-{name}.png"
    driver.save_screenshot(str(path))
    return path


def downloaded(folder: Path, name: str) -> Path:
    """Wait until Chromium has finished writing `name` into `folder`."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        path = folder / name
        if path.exists() and not (folder / f"{name}.crdownload").exists() and path.stat().st_size:
            return path
        time.sleep(0.2)
    raise AssertionError(f"{name} never arrived in {folder}: {sorted(p.name for p in folder.iterdir())}")


def loaded(image: WebElement) -> bool:
    return bool(image.get_property("complete")) and (image.get_property("naturalWidth") or 0) > 0


def lightness(image: Image.Image) -> np.ndarray:
    return rgb_to_lab8(np.asarray(image.convert("RGB")))[..., 0].astype(int)


def test_photos_and_a_broken_file_then_divider_strength_and_zip(
    browser: WebDriver, downloads: Path, tmp_path: Path
) -> None:
    library = PhotoLibrary()
    inputs = {"lighthouse.png": (480, 320), "portrait.png": (240, 360)}
    for number, (name, size) in enumerate(inputs.items()):
        library.image(number + 1).convert("L").resize(size).save(tmp_path / name)  # old black-and-white prints
    (tmp_path / "notes.jpg").write_bytes(b"these are my notes, not a photo")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"), "no model in the list")

    chooser = browser.find_element(By.ID, "files")
    chooser.send_keys("\n".join(str(tmp_path / name) for name in [*inputs, "notes.jpg"]))

    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".card.photo")) == 3, "three cards")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".card.failed"), "the broken file's error")
    wait_for(
        browser,
        lambda d: (
            all(loaded(image) for image in d.find_elements(By.CSS_SELECTOR, ".card.photo .after"))
            and len(d.find_elements(By.CSS_SELECTOR, ".card.photo .after")) == 2
        ),
        "two colorized photos",
    )
    failed = browser.find_element(By.CSS_SELECTOR, ".card.failed")
    assert failed.find_element(By.CSS_SELECTOR, ".name").text == "notes.jpg"
    assert "notes.jpg: cannot read it as an image" in failed.find_element(By.CSS_SELECTOR, ".state").text
    screenshot(browser, "error")

    compare = browser.find_element(By.CSS_SELECTOR, ".card.photo .compare")
    width = compare.size["width"]
    ActionChains(browser).move_to_element(compare).click_and_hold().move_by_offset(-width // 4, 0).release().perform()
    divider = float(compare.get_attribute("data-divider"))
    assert 20 <= divider <= 30, divider
    assert f"{divider:g}%" in compare.find_element(By.CSS_SELECTOR, ".after").value_of_css_property("clip-path")

    browser.execute_script(
        "const s = document.getElementById('strength'); s.value = '1.5';"
        "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));"
    )
    wait_for(
        browser,
        lambda d: all(
            "strength=1.50" in image.get_attribute("src") and loaded(image)
            for image in d.find_elements(By.CSS_SELECTOR, ".card.photo .after")
        ),
        "the photos at strength 1.5",
    )
    assert browser.find_element(By.ID, "strength-value").text == "1.50"
    screenshot(browser, "photos")

    browser.find_element(By.ID, "download-all").click()
    archive = downloaded(downloads, "colorized.zip")
    with zipfile.ZipFile(archive) as results:
        for name, size in inputs.items():
            colored = Image.open(results.open(name.replace(".png", "-colorized.png")))
            assert colored.size == size
            original = Image.open(tmp_path / name)
            assert np.abs(lightness(colored) - lightness(original)).max() <= 2, name


def test_a_clip_is_followed_to_the_end_and_downloaded(browser: WebDriver, downloads: Path, tmp_path: Path) -> None:
    # Long enough (about 5 s here) for the page to show it under way.
    clip = Clip(width=480, height=272, fps=24, scenes=4, frames_per_scene=30)
    source = clip.write(tmp_path / "homemovie.mp4")

    browser.find_element(By.ID, "files").send_keys(str(source))

    card = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".card.clip"), "the clip's card")[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", card)
    progress = card.find_element(By.TAG_NAME, "progress")
    wait_for(
        browser,
        lambda d: 0 < float(progress.get_attribute("value") or 0) < float(progress.get_attribute("max")),
        "progress under way",
    )
    screenshot(browser, "video-progress")
    assert not card.find_element(By.TAG_NAME, "video").is_displayed(), "no player before there is a film to play"
    wait_for(browser, lambda d: card.find_element(By.CSS_SELECTOR, ".report").text, "the clip's report")
    assert f"{clip.frames} frames" in card.find_element(By.CSS_SELECTOR, ".report").text
    screenshot(browser, "video-done")

    card.find_element(By.CSS_SELECTOR, ".download").click()
    result = downloaded(downloads, "homemovie-colorized.mp4")
    with av.open(str(result)) as colored:
        video = colored.streams.video[0]
        assert (video.codec_context.name, video.codec_context.width, video.codec_context.height) == (
            "h264",
            clip.width,
            clip.height,
        )
        assert [stream.codec_context.name for stream in colored.streams.audio] == ["aac"]
        assert sum(1 for _ in colored.decode(video=0)) == clip.frames


def test_a_photo_dropped_on_the_page_is_colorized(browser: WebDriver) -> None:
    before = len(browser.find_elements(By.CSS_SELECTOR, ".card.photo .after"))
    # A drop from the desktop, as the page receives it: a `drop` event whose DataTransfer holds a file.
    browser.execute_script(
        """
        const canvas = document.createElement('canvas');
        canvas.width = 120; canvas.height = 80;
        const context = canvas.getContext('2d');
        context.fillStyle = '#777'; context.fillRect(0, 0, 120, 80);
        context.fillStyle = '#ddd'; context.fillRect(30, 20, 60, 40);
        canvas.toBlob((blob) => {
          const dropped = new DataTransfer();
          dropped.items.add(new File([blob], 'dropped.png', {type: 'image/png'}));
          const zone = document.getElementById('drop');
          zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: dropped, cancelable: true}));
          zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dropped, cancelable: true}));
        });
        """
    )

    wait_for(
        browser,
        lambda d: (
            len([image for image in d.find_elements(By.CSS_SELECTOR, ".card.photo .after") if loaded(image)])
            == before + 1
        ),
        "the dropped photo colorized",
    )
    names = [element.text for element in browser.find_elements(By.CSS_SELECTOR, ".card.photo .name")]
    assert "dropped.png" in names
