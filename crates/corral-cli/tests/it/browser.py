"""Debian's Chromium driven through Selenium and Debian's chromedriver (never a downloaded
one), headless, its console kept: what the dashboard and report tests open pages in."""

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def chromium(width=1400, height=1000):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def console_errors(driver, allowed=()):
    """The console's errors since the last call, but those whose message holds an `allowed` text."""
    return [e for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(text in e["message"] for text in allowed)]
