"""A logged-in user opens a hostile workspace in a real browser (Chromium): the repository's page
runs script on the workspace's origin, with the user's session cookie in the browser, and tries
everything it can through the gateway:

- read the identity and access token from the outpost's check endpoints, in every spelling;
- make its own workspace answer with `Clear-Site-Data`, cookies in authentik's name (named,
  nameless, `__Host-`, for a path prefix), cookies for the parent domain, `Set-Cookie2`;
- plant a copy of authentik's cookie holding another user's session (admin's) where another
  workspace's requests will send it first, so that the user would act as admin there.

Afterwards the user is still logged in with the same session, no workspace has received anything
of the user's credentials, nothing the page read carries an identity, and the planted session is
refused rather than used. In path mode (every workspace on the gateway's origin) and in host mode
(`{service}.dev.example`, authentik's `forward_domain` cookie for the parent domain).
"""

from __future__ import annotations

import json
import urllib.parse

import pytest
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from chromium import SHOTS, WAIT, chromium
from fakes.outpost import FakeOutpost
from fakes.upstream import FakeUpstream, HOSTILE_PAGE, OUTPOST_SPELLINGS
from harness import Envoy, free_port, gateway_config, shipped_plugin_config

DOMAIN = "dev.example"


class Stack:
    """Envoy with the shipped filter configuration, the fake outpost and warm workspaces, on one
    port; `host_mode` puts every workspace on `{service}.dev.example`."""

    def __init__(self, host_mode: bool):
        self.port = free_port()
        self.host_mode = host_mode
        if host_mode:
            self.outpost = FakeOutpost(external_host=f"http://auth.{DOMAIN}", cookie_domain=DOMAIN,
                                       single_provider_fallback=False)
        else:
            self.outpost = FakeOutpost(external_host=f"http://127.0.0.1:{self.port}")
        self.upstream = FakeUpstream()
        config = shipped_plugin_config()
        if host_mode:
            config["routing"] = {**config["routing"], "workspace_domain": DOMAIN}
        self.envoy = Envoy(gateway_config(self.outpost.port, self.upstream.port, config),
                           name="hostile-host" if host_mode else "hostile-path", port=self.port)

    def url(self, repo: str, path: str) -> str:
        """`repo` is `owner--repo`: its workspace's URL in this mode."""
        if self.host_mode:
            return f"http://{repo}.{DOMAIN}{path}"
        owner, name = repo.split("--")
        return f"http://127.0.0.1:{self.port}/github/{owner}/{name}{path}"

    def origins(self) -> list[str]:
        if not self.host_mode:
            return [f"http://127.0.0.1:{self.port}"]
        return [f"http://{h}.{DOMAIN}" for h in ("octocat--hello-world", "octocat--other", "auth")]

    def __enter__(self):
        self.outpost.start()
        self.upstream.start()
        try:
            self.envoy.start()
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.envoy.stop()
        self.upstream.stop()
        self.outpost.stop()


def wait_for(driver, condition, what: str):
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition, what)
    except TimeoutException:
        driver.save_screenshot(str(SHOTS / "hostile-failure.png"))
        raise AssertionError(f"after {WAIT:g}s still waiting for {what}; browser at {driver.current_url}: "
                             f"{driver.find_element(By.TAG_NAME, 'body').text[:500]!r}") from None


def text_of(driver, element_id: str) -> str | None:
    found = driver.find_elements(By.ID, element_id)
    return found[0].text if found else None


def session_cookies(driver, name: str) -> list[dict]:
    return [c for c in driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"] if c["name"] == name]


@pytest.mark.parametrize("host_mode", [False, True], ids=["path-mode", "host-mode"])
def test_a_hostile_workspace_page_gets_nothing_of_the_user(host_mode):
    with Stack(host_mode) as stack:
        flags = [f"--unsafely-treat-insecure-origin-as-secure={','.join(stack.origins())}"]
        if host_mode:
            # Workspace hosts (port 80, so the Host carries no port, as behind a real gateway) resolve
            # to the local Envoy; their origins count as secure, as on HTTPS, so the browser honours
            # Clear-Site-Data and Secure cookies from them.
            flags.append(f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1:{stack.port}")
        with chromium(flags, log_name=f"chromedriver-hostile-{'host' if host_mode else 'path'}.log") as browser:
            run_attack(stack, browser)


def run_attack(stack: Stack, browser) -> None:
    outpost = stack.outpost
    alice = outpost.login("alice")
    admin = outpost.login("admin")
    token = outpost.issue_token("alice")
    # The user is logged in: authentik's HttpOnly cookie, exactly as the outpost sets it.
    cookie = {"name": outpost.cookie_name, "value": alice, "path": "/", "httpOnly": True, "sameSite": "Lax"}
    if stack.host_mode:
        cookie.update(url=f"http://auth.{DOMAIN}/", domain="." + DOMAIN)
    else:
        cookie["url"] = f"http://127.0.0.1:{stack.port}/"
    assert browser.execute_cdp_cmd("Network.setCookie", cookie).get("success", True)

    # The victim repository's requests will carry admin's session first, if the page can plant it.
    if stack.host_mode:
        plant = {"plant_path": "/deep/", "plant_domain": DOMAIN, "parent": DOMAIN}
        victim = stack.url("octocat--other", "/deep/__page")
    else:
        plant = {"plant_path": "/github/octocat/other/", "parent": "127.0.0.1"}
        victim = stack.url("octocat--other", "/__page")
    query = urllib.parse.urlencode({"plant_name": outpost.cookie_name, "plant_value": admin, **plant})

    # 1. The hostile page runs.
    browser.get(stack.url("octocat--hello-world", f"{HOSTILE_PAGE}?{query}"))
    wait_for(browser, lambda d: d.title == "done", "the hostile page's script to finish")
    result = json.loads(browser.find_element(By.ID, "result").get_attribute("textContent"))
    (SHOTS / f"hostile-{'host' if stack.host_mode else 'path'}.json").write_text(json.dumps(result, indent=1))

    # 2. Nothing it read carries an identity or the token, in any spelling of the check endpoints.
    assert len(result["reads"]) == len(OUTPOST_SPELLINGS) + 1
    for read in result["reads"]:
        assert "error" not in read, read
        seen = json.dumps([read["headers"], read["body"]]).lower()
        assert read["status"] in (400, 403, 404), read
        assert "x-authentik" not in seen, read
        assert "alice" not in seen and token.lower() not in seen and alice.lower() not in seen, read
    # The outpost never answered a client: every check it got was the gateway's, for a workspace.
    for check in outpost.checks:
        assert check["path"].startswith("/outpost.goauthentik.io/auth/envoy/"), check["path"]
        assert not any(s in check["path"] for s in ("/auth/envoy/anything", "/auth/envoy/xhr", "/auth/nginx"))

    # 3. Its workspace's answers reached the page, without an identity header.
    for answer in result["answers"]:
        assert answer.get("status") == 200, answer
        assert "x-authentik" not in json.dumps(answer["headers"]).lower(), answer

    # 4. The user is still logged in with the same session: authentik's cookie is intact, nothing
    #    the workspace's answers tried to set in its name exists.
    cookies = session_cookies(browser, outpost.cookie_name)
    real = [c for c in cookies if c["httpOnly"]]
    assert [c["value"] for c in real] == [alice], cookies
    everything = browser.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    assert not [c for c in everything if "planted" in c["value"] or c["name"] in ("wide", "")], everything
    # What a script can do by itself (document.cookie) is not the gateway's to stop: the planted copy.
    assert [c["value"] for c in cookies if not c["httpOnly"]] == [admin], cookies

    # 5. Another workspace: the user arrives as alice, without logging in again.
    browser.get(stack.url("octocat--third", "/__page"))
    wait_for(browser, lambda d: text_of(d, "user") == "alice", "another workspace showing alice")

    # 6. Where the page planted admin's session, the request carries the sign-in cookie twice: refused,
    #    never served as admin.
    browser.get(victim)
    wait_for(browser, lambda d: "twice" in d.find_element(By.TAG_NAME, "body").text, "the refusal of the planted session")
    assert text_of(browser, "user") is None

    # 7. No workspace ever received the user's credentials, or anyone but alice.
    assert stack.upstream.requests, "the workspaces were reached"
    for request in stack.upstream.requests:
        headers = {n.lower(): v for n, v in request["headers"]}
        # (The Referer repeats the hostile page's own URL, with the session it planted.)
        sent = json.dumps([h for h in request["headers"] if h[0].lower() != "referer"])
        assert alice not in sent and admin not in sent and token not in sent, request
        assert "authorization" not in headers and "x-authentik-jwt" not in headers, request["path"]
        assert headers.get("x-authentik-username") == "alice", request["path"]
    # And the session is still alice's at the outpost.
    assert outpost.session_claims(alice)["preferred_username"] == "alice"
