"""The published leaderboard in headless Chromium: one row per successful run, sorting,
filtering, a provenance page, no JavaScript errors, and a hostile model name shown as text.

Needs the Debian packages chromium and chromium-driver and the Python package selenium;
skipped when any of them is missing.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_leaderboard import FULL_COST, XSS, make_record, timed, write

from vlbench import leaderboard

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

# (run id, vision, R1, params in millions, weights)
RUNS = [
    ("r1", "mobilenetv3_small_100", 31.0, 2.5, "pretrained"),
    ("r2", "efficientnet_b0", 44.0, 5.3, "pretrained"),
    ("r3", "convnext_atto", 38.0, 3.7, "random-init"),
    ("r4", "deit_tiny_patch16_224", 25.0, 5.7, "pretrained"),
    ("r5", XSS, 12.0, 1.1, "random-init"),
]


def _cost(params_m: float) -> dict[str, Any]:
    return FULL_COST | {
        "params": {"unit": "parameters", "total": {"trainable": 0, "frozen": 0, "total": int(params_m * 1e6)}},
        "latency": {"unit": "ms", "batch": 1, "model": timed(params_m * 1.5)},
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    results = root / "results"
    for run_id, vision, value, params, weights in RUNS:
        write(results, make_record(run_id, vision=vision, value=value, weights=weights, cost=_cost(params)))
    write(results, make_record("r6", vision="resnet18", status="error"))
    return leaderboard.publish(results, root / "public", suites=results).out  # no suite files: no missing-run check


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    browser.set_page_load_timeout(20)
    yield browser
    browser.quit()


@pytest.fixture(autouse=True)
def no_javascript_errors(driver: Any) -> Iterator[None]:
    """Every test ends with an empty list of browser errors (script errors, CSP refusals, 404s)."""
    driver.get_log("browser")  # start from a clean log
    yield
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def _rows(driver: Any) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")


def _column(driver: Any, header: str) -> list[str]:
    table = driver.find_element(By.CSS_SELECTOR, "table.runs")
    headers = [th.text.strip(" ↕▲▼") for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    index = headers.index(header) + 1
    return [td.text for td in table.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({index})")]


def _sort(driver: Any, header: str) -> None:
    driver.find_element(By.XPATH, f"//table[contains(@class, 'runs')]//th/button[normalize-space()='{header}']").click()


def test_index_lists_one_row_per_successful_run(driver, base_url):
    driver.get(f"{base_url}/index.html")
    assert len(_rows(driver)) == len(RUNS)
    assert driver.find_element(By.CSS_SELECTOR, ".controls output").text == f"showing {len(RUNS)} of {len(RUNS)} runs"
    assert "resnet18" in driver.find_element(By.XPATH, "//h2[.='Failed runs']/following-sibling::div").text


def test_sorting_by_a_column_reorders_rows(driver, base_url):
    driver.get(f"{base_url}/index.html")
    ranked = _column(driver, "model")
    _sort(driver, "params (M)")
    params = [float(v) for v in _column(driver, "params (M)")]
    assert params == sorted(params) and _column(driver, "model") != ranked
    _sort(driver, "params (M)")
    assert [float(v) for v in _column(driver, "params (M)")] == sorted(params, reverse=True)
    _sort(driver, "model")
    assert _column(driver, "model") == sorted(_column(driver, "model"), key=str.lower)


def test_filtering_hides_rows(driver, base_url):
    driver.get(f"{base_url}/index.html")
    driver.find_element(By.CSS_SELECTOR, ".controls input[type=search]").send_keys("efficientnet")
    assert [row.text.split()[1] for row in _rows(driver) if row.is_displayed()] == [
        "efficientnet_b0+clip_text+contrastive/person_search"
    ]
    driver.find_element(By.CSS_SELECTOR, ".controls input[type=search]").clear()
    driver.find_element(By.CSS_SELECTOR, ".controls input[type=checkbox]").click()
    assert sum(row.is_displayed() for row in _rows(driver)) == sum(w != "random-init" for *_, w in RUNS)


def test_provenance_page_opens(driver, base_url):
    driver.get(f"{base_url}/index.html")
    driver.find_element(By.LINK_TEXT, "efficientnet_b0+clip_text+contrastive/person_search").click()
    assert driver.current_url.endswith("/runs/quick/r2.html")
    assert driver.find_element(By.TAG_NAME, "h1").text == "efficientnet_b0+clip_text+contrastive/person_search"
    page = driver.find_element(By.TAG_NAME, "main").text
    for fact in (
        "git commit",
        "abc123",
        "plugin.efficientnet_b0",
        "Intel Xeon Platinum (fp32)",
        "train loss, first → last epoch",
    ):
        assert fact in page
    driver.find_element(By.LINK_TEXT, "quick").click()
    assert driver.find_element(By.TAG_NAME, "h1").text == "Suite quick"
    assert driver.find_element(By.CSS_SELECTOR, "figure img").get_attribute("naturalWidth") != "0"  # the SVG plot loaded


def test_a_hostile_model_name_renders_as_text(driver, base_url):
    driver.get(f"{base_url}/index.html")
    assert any(XSS in row.text for row in _rows(driver))
    assert driver.find_elements(By.CSS_SELECTOR, "img[src=x]") == []
    with pytest.raises(NoAlertPresentException):
        _ = driver.switch_to.alert
    driver.find_element(By.PARTIAL_LINK_TEXT, XSS).click()
    assert driver.find_element(By.TAG_NAME, "h1").text == f"{XSS}+clip_text+contrastive/person_search"
    with pytest.raises(NoAlertPresentException):
        _ = driver.switch_to.alert


def test_the_site_works_from_disk(driver, site):
    driver.get((site / "index.html").as_uri())
    _sort(driver, "params (M)")
    header = driver.find_element(By.XPATH, "//table[contains(@class, 'runs')]//th[button[.='params (M)']]")
    assert header.get_attribute("aria-sort") == "ascending"  # the script ran: opened from disk, CSP and all
