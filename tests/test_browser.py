"""A real browser walks the whole flow: gateway -> authentik login page -> callback -> the page that
says the workspace is starting -> (it reloads itself) workspace page -> WebSocket, through the real
Envoy with the filter (tests/devstack.py, what `make run` starts), with either generation of
authentik's outpost; and a login whose callback authentik refuses starts over once.

Needs the Debian packages `chromium` and `chromium-driver`; without them this test fails, it
does not skip, so CI cannot pass while silently not running it.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse

import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from chromium import SHOTS, WAIT, chromium
from devstack import DevStack
from fakes.outpost import GENERATIONS
from harness import counters, free_port

REPO_PATH = "/github/octocat/hello-world"
REPO_URL = "https://github.com/octocat/hello-world"
FLOW = 30.0  # the whole walk, every wait included


@pytest.fixture(params=GENERATIONS)
def stack(request):
    with DevStack(port=free_port(), cold_start=1.0, generation=request.param) as s:
        yield s


@pytest.fixture
def browser():
    with chromium() as driver:
        yield driver


_deadline = [float("inf")]


def wait_for(driver, condition, what: str):
    """Waits at most WAIT, and never past the flow's deadline."""
    timeout = max(0.1, min(WAIT, _deadline[0] - time.monotonic()))
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition, what)
    except TimeoutException:
        driver.save_screenshot(str(SHOTS / "failure.png"))
        raise AssertionError(f"after {timeout:g}s still waiting for {what}; browser at {driver.current_url}; "
                             f"see {SHOTS / 'failure.png'}") from None


def heading(driver) -> str | None:
    found = driver.find_elements(By.TAG_NAME, "h1")
    return found[0].text if found else None


def counter(stack, name: str) -> int:
    return counters(stack.envoy).get(name, 0)


def text_of(driver, element_id: str) -> str | None:
    found = driver.find_elements(By.ID, element_id)
    return found[0].text if found else None


def test_login_starting_page_workspace_and_websocket_in_a_browser(browser, stack):
    _deadline[0] = time.monotonic() + FLOW
    workspace = f"{stack.url}{REPO_PATH}/"

    # 1. Anonymous: the gateway sends the browser to authentik's login page (on the outpost's port).
    browser.get(stack.url + REPO_PATH)
    wait_for(browser, lambda d: d.find_elements(By.ID, "username"), "the login form")
    login = urllib.parse.urlsplit(browser.current_url)
    assert login.path == "/application/o/authorize/", browser.current_url
    assert login.port == stack.outpost.port, browser.current_url
    browser.save_screenshot(str(SHOTS / "01-login.png"))

    # 2. Log in: authorize -> gateway callback -> back to the workspace URL, whose workspace is cold:
    #    the gateway answers with the page that says it is starting, and wakes it.
    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys("alice")
    browser.find_element(By.ID, "login").click()
    wait_for(browser, lambda d: heading(d) == "Starting your workspace", "the starting page")
    assert browser.current_url == workspace  # the page stands in for the workspace: a reload lands in it
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "The workspace for github/octocat/hello-world is starting." in text, text
    assert "This page reloads into it when it is ready." in text, text
    assert re.search(r"Request ID: [0-9a-f-]{36}", text), text
    browser.save_screenshot(str(SHOTS / "02-starting.png"))
    assert counter(stack, "starting_pages_total") >= 1
    assert counter(stack, "cold_starts_total") == 1

    # 3. The page reloads itself; once the workspace is up, the reload lands in it.
    wait_for(browser, lambda d: text_of(d, "repo") == REPO_URL, "the workspace page showing the repository")
    assert browser.current_url == workspace
    assert text_of(browser, "user") == "alice"
    assert text_of(browser, "groups") == "developers"
    assert stack.workspaces.cold_starts == 1  # the gateway's wake-up was the cold start
    # The session came from the callback the outpost answered through the gateway.
    assert any("X-authentik-auth-callback=true" in c["path"] for c in stack.outpost.checks)
    browser.save_screenshot(str(SHOTS / "03-workspace.png"))

    # 4. The page's own WebSocket (relative URL, so …/hello-world/ws) echoes "hello" through Envoy.
    wait_for(browser, lambda d: text_of(d, "ws") == "hello", "the WebSocket echo")
    upgrade = json.loads(browser.find_element(By.ID, "ws-upgrade").get_attribute("textContent"))
    headers = {n.lower(): v for n, v in upgrade["headers"]}
    assert upgrade["path"] == "/ws"
    assert headers["x-authentik-username"] == "alice"
    assert headers["x-github-repo"] == REPO_URL
    assert "authentik_proxy" not in headers.get("cookie", "")  # the session stays at the gateway
    browser.save_screenshot(str(SHOTS / "04-websocket.png"))

    # 5. The session cookie is in the jar and out of reach of page scripts.
    cookies = [c for c in browser.get_cookies() if c["name"].startswith("authentik_proxy_")]
    assert len(cookies) == 1, browser.get_cookies()
    assert cookies[0]["httpOnly"] is True
    assert "authentik_proxy_" not in browser.execute_script("return document.cookie")

    # 6. Reload: still logged in, the workspace is warm: straight in, no starting page, no cold start.
    pages = counter(stack, "starting_pages_total")
    started = time.monotonic()
    browser.refresh()
    wait_for(browser, lambda d: text_of(d, "ws") == "hello", "the reloaded page's WebSocket echo")
    assert browser.current_url == workspace
    assert text_of(browser, "user") == "alice"
    assert counter(stack, "starting_pages_total") == pages
    assert stack.workspaces.cold_starts == 1
    print(f"warm reload with WebSocket: {time.monotonic() - started:.2f}s")


def test_a_login_whose_callback_is_refused_starts_over_once_in_a_browser(browser, stack):
    """The state cookie is gone when the browser comes back from the login page (it expired):
    authentik refuses the callback, the gateway sends the browser back to the workspace URL, the
    login starts over, and the second one finishes."""
    _deadline[0] = time.monotonic() + FLOW
    workspace = f"{stack.url}{REPO_PATH}/"
    browser.get(workspace)
    wait_for(browser, lambda d: d.find_elements(By.ID, "username"), "the login form")
    # Cookies belong to a host, not a port: the login page's host is the gateway's.
    assert browser.get_cookie(stack.outpost.cookie_name) is not None
    browser.delete_cookie(stack.outpost.cookie_name)
    checks = len(stack.outpost.checks)

    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys("alice")
    browser.find_element(By.ID, "login").click()
    # Refused -> back to the workspace URL -> a new login redirect: the login form again.
    wait_for(browser, lambda d: len(stack.outpost.checks) >= checks + 2 and d.find_elements(By.ID, "username"),
             "the login form of the second login")
    refused, again = stack.outpost.checks[checks:checks + 2]
    assert "X-authentik-auth-callback=true" in refused["path"]
    assert again["path"] == f"/outpost.goauthentik.io/auth/envoy{REPO_PATH}/"
    assert browser.get_cookie("authentik_gateway_login_retry")["value"] == "1"
    browser.save_screenshot(str(SHOTS / "retry-01-login-again.png"))

    browser.find_element(By.ID, "username").send_keys("alice")
    browser.find_element(By.ID, "password").send_keys("alice")
    browser.find_element(By.ID, "login").click()
    wait_for(browser, lambda d: text_of(d, "repo") == REPO_URL or heading(d) == "Starting your workspace",
             "the workspace (or its starting page) after the second login")
    assert browser.current_url == workspace
    assert browser.get_cookie("authentik_gateway_login_retry") is None  # the marker ended with the login
    browser.save_screenshot(str(SHOTS / "retry-02-workspace.png"))
