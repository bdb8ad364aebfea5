"""LLaMA Board in a real headless browser (Debian's chromium + chromedriver, driven by selenium):
stage cls with `rslora + cls_head` on the tiny model and the bundled Debian sample, the memory estimate
following the batch size, a training run started from the UI, its metrics and confusion matrix shown.

Screenshots: LFX_WEBUI_SCREENSHOTS=docs writes docs/webui_train_before.png and docs/webui_train_after.png.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import BIN, RECIPES, env, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"),
]


def _wait(fn, timeout: float, what: str):
    end, last = time.time() + timeout, None
    while time.time() < end:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # element not there yet
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")


@pytest.fixture()
def webui(tmp_path):
    """`llamafactory-cli webui` on 127.0.0.1 in a scratch folder; yields (url, folder)."""
    port = free_port()
    log = open(tmp_path / "webui.log", "w")
    proc = subprocess.Popen([str(BIN / "llamafactory-cli"), "webui"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                            env=env(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=port, BROWSER="true",
                                    GRADIO_ANALYTICS_ENABLED="False"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: proc.poll() is not None and _raise(tmp_path) or urllib.request.urlopen(url + "/config", timeout=2),
              180, "the web UI to start")
        yield url, tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _raise(folder: Path):
    raise AssertionError("the web UI exited:\n" + (folder / "webui.log").read_text()[-3000:])


@pytest.fixture()
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install selenium (a test dependency)")
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1800"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """Gradio components found by their (English) labels, as a user finds them."""

    def __init__(self, driver):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        self.d, self.By, self.Keys = driver, By, Keys

    def block(self, label: str):
        xp = (f"//*[@data-testid='block-info' and normalize-space(.)='{label}']"
              "/ancestor::*[contains(concat(' ', normalize-space(@class), ' '), ' block ')][1]")
        return self.d.find_element(self.By.XPATH, xp)

    def pick(self, label: str, option: str) -> None:
        box = self.block(label).find_element(self.By.CSS_SELECTOR, "input")
        box.click()
        box.send_keys(self.Keys.CONTROL, "a")
        box.send_keys(self.Keys.BACKSPACE)
        box.send_keys(option)
        _wait(lambda: self.d.find_element(self.By.XPATH, f"//ul[@role='listbox']/li[@aria-label='{option}']"),
              10, f"option {option!r} of {label!r}").click()
        time.sleep(0.3)

    def type(self, label: str, text: str, enter: bool = False, css: str = "textarea, input") -> None:
        box = self.block(label).find_element(self.By.CSS_SELECTOR, css)
        self._type(box, text, enter)

    def _type(self, box, text: str, enter: bool = False) -> None:
        box.click()
        box.send_keys(self.Keys.CONTROL, "a")
        box.send_keys(text)
        if enter:
            box.send_keys(self.Keys.ENTER)
        box.send_keys(self.Keys.TAB)
        time.sleep(0.3)

    def by_id(self, elem_id: str):
        return self.d.find_element(self.By.ID, elem_id)

    def estimate(self) -> str:
        return self.by_id("lfx-memory-estimate").text

    def body(self) -> str:
        return self.d.find_element(self.By.TAG_NAME, "body").text

    def click_button(self, text: str) -> None:
        self.d.find_element(self.By.XPATH, f"//button[normalize-space(.)='{text}']").click()


def _config_checks(url: str) -> None:
    """Gradio's /config: the stage and method dropdowns offer the pack's entries; the pack's panels exist."""
    config = json.load(urllib.request.urlopen(url + "/config", timeout=10))
    choices = [[c[0] if isinstance(c, list) else c for c in comp.get("props", {}).get("choices") or []]
               for comp in config["components"] if comp.get("type") == "dropdown"]
    stage = next(c for c in choices if "Supervised Fine-Tuning" in c)
    method = next(c for c in choices if c[:4] == ["full", "freeze", "lora", "oft"])
    assert "Sequence Classification" in stage
    assert {"rslora", "cls_head", "layerwise_lr", "rslora + cls_head", "rslora + cls_head + layerwise_lr"} <= set(method)
    assert "train_norms" in method  # the example plugin's strategy: third-party strategies appear too
    elem_ids = {comp.get("props", {}).get("elem_id") for comp in config["components"]}
    assert {"lfx-memory-estimate", "lfx-pack-tab", "lfx-class_weights", "lfx-memory_check"} <= elem_ids


def metrics_labels(run_dir: Path) -> list:
    return json.loads((run_dir / "label_map.json").read_text())["labels"]


def _screenshot(driver, name: str, scroll_to=None, full: bool = False) -> None:
    folder = os.environ.get("LFX_WEBUI_SCREENSHOTS")
    if not folder:
        return
    from PIL import Image

    size = driver.get_window_size()
    if full:
        driver.execute_script("window.scrollTo(0, 0);")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(size["width"], min(height + 140, 4000))
    elif scroll_to is not None:
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", scroll_to)
    time.sleep(0.5)
    path = Path(folder) / name
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])
    img = Image.open(path).convert("RGB")
    img = img.resize((img.width // 2, img.height // 2), Image.LANCZOS).quantize(colors=64)
    img.save(path, optimize=True)


def test_cls_run_from_the_browser(webui, browser, tiny_llama):
    url, folder = webui
    try:
        _cls_run_from_the_browser(url, folder, browser, tiny_llama)
    except AssertionError as err:
        log = (folder / "webui.log").read_text(errors="replace")[-4000:]
        raise AssertionError(f"{err}\n--- web UI log (tail) ---\n{log}") from None


def _cls_run_from_the_browser(url, folder, browser, tiny_llama):
    _config_checks(url)
    page = Page(browser)
    browser.get(url)
    _wait(lambda: page.block("Stage"), 60, "the Train tab")
    time.sleep(1)  # the UI's load event sets language and defaults

    page.pick("Model name", "Custom")
    page.type("Model path", str(tiny_llama))
    page.pick("Stage", "Sequence Classification")
    page.pick("Finetuning method", "rslora + cls_head")
    page.type("Data dir", str(RECIPES / "data"))
    page.type("Dataset", "debian_sample_train", enter=True)
    page.type("Cutoff length", "64", css="input[type=number]")
    first = _wait(lambda: "batch 2 x 64 tokens" in page.estimate() and page.estimate(), 60, "the memory estimate")
    assert "Predicted peak GPU memory" in first and "activations" in first

    page.type("Batch size", "8", css="input[type=number]")
    second = _wait(lambda: "batch 8 x 64 tokens" in page.estimate() and page.estimate(), 60, "the estimate to follow")
    peak = lambda text: text.split("**")[0] if "**" in text else text.split("per GPU")[0]  # noqa: E731
    assert peak(first) != peak(second), (first, second)

    page.type("Epochs", "1")
    page.type("Max samples", "24")
    page.type("Gradient accumulation", "1", css="input[type=number]")
    page.pick("Compute type", "fp32")  # CPU here
    page.by_id("lfx-pack-tab").find_element(page.By.CSS_SELECTOR, "button").click()
    page._type(page.by_id("lfx-eval_dataset").find_element(page.By.CSS_SELECTOR, "textarea"), "debian_sample_validation")
    page.pick("target GPU (memory verdict)", "A10G")
    verdict = _wait(lambda: "fits on A10G" in page.estimate() and page.estimate(), 60, "the verdict for an A10G")
    assert "batch 8 x 64 tokens" in verdict
    _screenshot(browser, "webui_train_before.png", full=True)

    page.click_button("Preview command")
    _wait(lambda: "training_args.yaml" in page.body() and "- cls_head" in page.body(), 60, "the previewed YAML")

    page.click_button("Start")
    _wait(lambda: "Classification results" in page.body() and "Confusion matrix" in page.body(), 240,
          "the finished run's metrics")
    text = page.body()
    assert "accuracy" in text and "macro-F1" in text and "gold \\ predicted" in text
    _screenshot(browser, "webui_train_after.png", scroll_to=browser.find_element(
        page.By.XPATH, "//button[normalize-space(.)='Start']"))

    run_dir = next((folder / "saves" / "Custom" / "rslora+cls_head").iterdir())
    args = yaml.safe_load((run_dir / "training_args.yaml").read_text())
    assert args["stage"] == "cls" and args["finetuning_type"] == ["rslora", "cls_head"]
    assert args["eval_dataset"] == "debian_sample_validation" and args["per_device_train_batch_size"] == 8
    metrics = json.loads((run_dir / "eval_results.json").read_text())
    assert f"{metrics['eval_accuracy']:.4f}" in text and f"{metrics['eval_macro_f1']:.4f}" in text
    assert (run_dir / "confusion_matrix.png").is_file()

    # Export tab on the finished cls run: the merged classifier, not a causal LM
    browser.find_element(page.By.XPATH, "//button[@role='tab' and normalize-space(.)='Export']").click()
    time.sleep(1)
    page.pick("Checkpoint path", run_dir.name)  # focusing the dropdown lists the saved runs
    export_dir = folder / "exported"
    page.type("Export dir", str(export_dir))
    shown = [b for b in browser.find_elements(page.By.XPATH, "//button[normalize-space(.)='Export']") if b.is_displayed()]
    shown[-1].click()  # the tab's own button comes first, the action button below it
    said = lambda: any("Model exported." in (t.get_attribute("value") or "")  # noqa: E731  (the tab's info box)
                       for t in browser.find_elements(page.By.TAG_NAME, "textarea"))
    _wait(lambda: (export_dir / "config.json").is_file() and said(), 240, "the export")
    config = json.loads((export_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert sorted(config["id2label"].values()) == sorted(metrics_labels(run_dir))
