"""The play page in a real browser: Debian's chromium, driven by Selenium through chromium-driver (installed by
``.ci/run``), against the service in a process of its own (uvicorn, a SQLite file, the fake writer). Two
browsers (two sessions, two players) join one game by its link, both vote, and the next scene appears in both
without a reload; a premise written as markup shows as text."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:  # .ci/run installs both and sets CYOA_REQUIRE_BROWSER: there, no skip
    if os.environ.get("CYOA_REQUIRE_BROWSER"):
        raise RuntimeError("chromium and chromium-driver are required: apt-get install chromium chromium-driver")
    pytest.skip("chromium and chromium-driver are not installed", allow_module_level=True)

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)> A knight wakes in a glass forest."
VOTE_SECONDS = 10  # the shortest a vote may stay open: the opening's vote closes at its deadline


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_process.py")),
                                str(tmp_path / "games.db"), str(port), str(VOTE_SECONDS)],
                               stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[2])
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: _up(base), "the server", 20)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def browser() -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=430,932"):
        options.add_argument(argument)  # a phone's width: the page must read there
    return webdriver.Chrome(service=DriverService(executable_path=str(DRIVER)), options=options)


def until(check: Callable[[], object], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def text(driver: WebDriver, element: str) -> str:
    return str(driver.find_element(By.ID, element).text)


def choices(driver: WebDriver) -> list[str]:
    # Read in one script: the page redraws its buttons at every vote, so a found element may be gone by its read.
    found = driver.execute_script("return [...document.querySelectorAll('#choices button')].map(b => b.textContent)")
    return [str(choice) for choice in found]


def vote(driver: WebDriver, index: int) -> None:
    for _ in range(20):
        try:
            driver.find_elements(By.CSS_SELECTOR, "#choices button")[index].click()
            return
        except StaleElementReferenceException:  # redrawn between the find and the click: find it again
            time.sleep(0.05)
    raise AssertionError("the choice button kept being redrawn")


def test_two_browsers_play_one_game_and_see_the_next_scene_without_a_reload(site: str) -> None:
    ana, ben = browser(), browser()
    try:
        ana.get(site + "/")
        until(lambda: len(ana.find_elements(By.CSS_SELECTOR, "#genre option")) > 1, "the genres")
        ana.find_element(By.ID, "premise").send_keys(XSS)
        ana.find_element(By.ID, "go").click()
        until(lambda: "/g/" in ana.current_url and text(ana, "narration"), "the opening scene")
        assert text(ana, "premise") == XSS  # shown as the characters typed: no markup, no script ran
        with pytest.raises(NoAlertPresentException):
            ana.switch_to.alert.text  # noqa: B018
        assert ana.find_elements(By.CSS_SELECTOR, "#premise *") == []
        assert ana.find_element(By.ID, "starter").is_displayed()  # Ana started it: she may steer

        ben.get(ana.current_url)  # the shared link
        until(lambda: text(ben, "narration"), "the opening in the second browser")
        opening = text(ana, "narration")
        assert text(ben, "narration") == opening and not ben.find_element(By.ID, "starter").is_displayed()
        assert choices(ben) == choices(ana) and len(choices(ana)) >= 2

        for driver, name in ((ana, "<b>Ana</b>"), (ben, "Ben")):  # names show as text, to the whole room
            driver.find_element(By.ID, "nickname").send_keys(name)
            driver.find_element(By.CSS_SELECTOR, "#nick button").click()
            # Ben is not playing until he votes: both pages name Ana alone
            until(lambda d=driver: text(d, "players") == "Playing: <b>Ana</b>", "the players' names")  # type: ignore[misc]
        vote(ana, 1)
        until(lambda: "(1 vote)" in choices(ben)[1], "Ana's vote in Ben's browser")
        vote(ben, 1)
        until(lambda: "(2 votes)" in choices(ana)[1], "Ben's vote in Ana's browser")
        for driver in (ana, ben):  # the vote closes at its deadline; nobody reloads
            until(lambda d=driver: text(d, "narration") not in ("", opening), "the next scene",  # type: ignore[misc]
                  VOTE_SECONDS + 15)
        assert text(ana, "narration") == text(ben, "narration")
        assert text(ana, "players") == "Playing: <b>Ana</b>, Ben" and not ana.find_elements(By.CSS_SELECTOR, "#players *")
        ana.find_element(By.CSS_SELECTOR, "#history-box summary").click()
        until(lambda: len(ana.find_elements(By.CSS_SELECTOR, "#history li")) == 1, "the story so far")
        assert opening in ana.find_element(By.CSS_SELECTOR, "#history li").text
    finally:
        ana.quit()
        ben.quit()
