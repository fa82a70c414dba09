"""Takes the README's screenshot of the play page: a `cyoa web` already running (the real champion) at the URL
given, a game started by one browser and joined by a second, both named, one vote cast, at a phone's width.

    .venv/bin/python docs/screenshot.py http://127.0.0.1:8000 docs/web-game.png
"""

from __future__ import annotations

import shutil
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

PREMISE = "The school's cooking club must win the autumn festival or be disbanded."


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=430,1400"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)


def main(base: str, out: str) -> None:
    starter, friend = browser(), browser()
    try:
        starter.get(base + "/")
        time.sleep(1)
        starter.find_element(By.ID, "premise").send_keys(PREMISE)
        starter.find_element(By.ID, "go").click()
        deadline = time.monotonic() + 180
        while not starter.find_elements(By.CSS_SELECTOR, "#choices button") and time.monotonic() < deadline:
            time.sleep(0.5)
        starter.find_element(By.ID, "nickname").send_keys("Aoi")
        starter.find_element(By.CSS_SELECTOR, "#nick button").click()
        friend.get(starter.current_url)
        time.sleep(2)
        friend.find_element(By.ID, "nickname").send_keys("Ren")
        friend.find_element(By.CSS_SELECTOR, "#nick button").click()
        time.sleep(1)
        friend.find_elements(By.CSS_SELECTOR, "#choices button")[0].click()
        starter.find_element(By.ID, "star").click()
        time.sleep(2)
        starter.refresh()  # the players' names come with the game's next read
        time.sleep(3)
        starter.save_screenshot(out)
    finally:
        starter.quit()
        friend.quit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
