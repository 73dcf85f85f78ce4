# Copyright: turnkey.cluster maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An end-to-end OpenID Connect login through a real headless Chromium (Debian's chromium driven by the
system chromedriver, never a downloaded one): discovery, authorization-code flow with PKCE S256, state and
nonce, the IdP's login form and consent in the browser, the code read from the browser's URL when it reaches
the redirect URI, the code exchanged with the client's credentials, the ID token checked (signature from the
JWKS, iss, aud, exp, nonce) and its groups claim. Each step is recorded; a failure names its step.

Selenium is imported lazily (it is an optional library of the controller, as Ansible modules treat them).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import traceback

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import parse_qs, quote, urlencode, urlsplit
from ansible.module_utils.urls import open_url

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                  "--no-first-run", "--disable-background-networking", "--disable-sync",
                  "--disable-component-update")
SELENIUM_IMPORT_ERROR = None
try:  # pragma: no cover - depends on the controller
    import selenium  # noqa: F401  pylint: disable=unused-import
except ImportError:
    SELENIUM_IMPORT_ERROR = traceback.format_exc()


class StepFailed(Exception):
    def __init__(self, step, msg):
        super().__init__(msg)
        self.step = step
        self.msg = msg


@contextlib.contextmanager
def browser_step(step):
    """A browser error (Chromium or its driver gone, a page that never settles) fails the step it happened in,
    named, rather than escaping as a traceback without a message."""
    from selenium.common.exceptions import WebDriverException

    try:
        yield
    except WebDriverException as exc:
        raise StepFailed(step, "Chromium failed: %s" % (exc.msg or type(exc).__name__).strip().splitlines()[0]) from exc


def page_changed(exc):
    """Whether a browser error only means the page changed under the driver, or is not ready yet: an element found
    before a navigation or a re-render (single-page apps render their forms again) is gone, or one found while its
    stage still loads cannot be typed into yet (hidden, as a flow executor keeps it until it has rendered)."""
    from selenium.common.exceptions import (
        ElementNotInteractableException,
        StaleElementReferenceException,
        WebDriverException,
    )

    return isinstance(exc, (StaleElementReferenceException, ElementNotInteractableException)) or (
        isinstance(exc, WebDriverException) and "does not belong to the document" in (exc.msg or ""))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    text = text.encode("ascii") if isinstance(text, str) else text
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def pkce_pair():
    verifier = b64url(secrets.token_bytes(48))
    return verifier, b64url(hashlib.sha256(verifier.encode("ascii")).digest())


class Login:
    """One login; `report` is the per-step record the module returns."""

    def __init__(self, params):
        self.p = params
        self.report = []
        self.screenshot = None

    # -- helpers --------------------------------------------------------------------------------------
    def step(self, name, detail):
        self.report.append({"step": name, "ok": True, "detail": detail})

    def http(self, step, url, data=None, headers=None, ca_path=None):
        try:
            answer = open_url(url, method="POST" if data is not None else "GET", data=data, headers=headers,
                              timeout=self.p["timeout"], validate_certs=True, ca_path=ca_path or self.p.get("ca_path"))
            return answer.getcode(), json.loads(answer.read() or b"null")
        except HTTPError as exc:
            body = exc.read().decode("utf-8", "replace")
            try:
                return exc.code, json.loads(body)
            except ValueError:
                raise StepFailed(step, "%s answered HTTP %s: %s" % (url, exc.code, body[:300])) from None
        except (URLError, OSError, ValueError) as exc:
            raise StepFailed(step, "%s: %s" % (url, getattr(exc, "reason", exc))) from exc
        except Exception as exc:  # ansible's own ConnectionError (TLS) is not an OSError
            raise StepFailed(step, "%s: %s" % (url, exc)) from exc

    # -- the steps -----------------------------------------------------------------------------------
    def discovery(self):
        issuer = self.p["issuer"]
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        status, meta = self.http("discovery", url)
        if status != 200 or not isinstance(meta, dict):
            raise StepFailed("discovery", "%s answered HTTP %s" % (url, status))
        if meta.get("issuer") != issuer:
            raise StepFailed("discovery", "the discovery document names issuer %r, not %r" % (
                meta.get("issuer"), issuer))
        missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not meta.get(k)]
        if missing:
            raise StepFailed("discovery", "the discovery document lacks %s" % ", ".join(missing))
        if "S256" not in meta.get("code_challenge_methods_supported", ["S256"]):
            raise StepFailed("discovery", "the IdP does not offer PKCE S256")
        self.step("discovery", url)
        return meta

    def authorize_url(self, meta):
        self.state, self.nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.verifier, challenge = pkce_pair()
        query = urlencode({"response_type": "code", "client_id": self.p["client_id"],
                           "redirect_uri": self.p["redirect_uri"], "scope": " ".join(self.p["scopes"]),
                           "state": self.state, "nonce": self.nonce, "code_challenge": challenge,
                           "code_challenge_method": "S256"})
        return meta["authorization_endpoint"] + ("&" if "?" in meta["authorization_endpoint"] else "?") + query

    def browser_login(self, browser, url, keep_screenshot=True):
        """The IdP's pages in the browser until the redirect URI; the code it carries. keep_screenshot: the
        picture of this login is the report's (false when a later page, Vault's UI, makes it)."""
        self.step("browser", "%s via %s (%s)" % (browser.version, CHROMEDRIVER, browser.trust))
        landed = None
        try:
            with browser_step("login"):
                landed = browser.log_in(url, self.p["redirect_uri"], self.p["username"], self.p["password"], self)
        finally:  # a failed login keeps its picture too: the page that refused it
            if keep_screenshot or landed is None:
                self.screenshot = self.p["screenshot"]
                browser.save_screenshot(self.screenshot)
        if keep_screenshot:
            self.step("screenshot", self.screenshot)
        query = parse_qs(urlsplit(landed).query)
        if query.get("error"):
            raise StepFailed("redirect", "the IdP redirected with error %s: %s" % (
                query["error"][0], query.get("error_description", [""])[0]))
        if query.get("state") != [self.state]:
            raise StepFailed("redirect", "the redirect's state does not match the one sent (possible CSRF)")
        if not query.get("code"):
            raise StepFailed("redirect", "the redirect to %s carries no code" % self.p["redirect_uri"])
        self.step("redirect", "reached the redirect URI with a code and the state sent")
        return query["code"][0]

    def token(self, meta, code):
        # RFC 6749 2.3.1: id and secret are form-urlencoded before the Basic encoding
        pair = "%s:%s" % (quote(self.p["client_id"], safe=""), quote(self.p["client_secret"], safe=""))
        basic = base64.b64encode(pair.encode()).decode()
        form = urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": self.p["redirect_uri"],
                          "code_verifier": self.verifier})
        headers = {"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"}
        status, answer = self.http("token", meta["token_endpoint"], data=form, headers=headers)
        if status != 200 or not isinstance(answer, dict) or not answer.get("id_token"):
            error = answer.get("error") if isinstance(answer, dict) else None
            hint = " (the client secret or client id is wrong)" if error == "invalid_client" else ""
            raise StepFailed("token", "the token endpoint refused the code: HTTP %s %s%s" % (
                status, json.dumps(answer)[:300], hint))
        self.step("token", "code exchanged at %s with the client's credentials" % meta["token_endpoint"])
        return answer["id_token"]

    def validate(self, meta, id_token):
        try:
            header_b64, payload_b64, signature_b64 = id_token.split(".")
            header, claims = json.loads(b64url_decode(header_b64)), json.loads(b64url_decode(payload_b64))
            signature = b64url_decode(signature_b64)
        except ValueError:
            raise StepFailed("id_token", "the ID token is not a JWS compact serialisation") from None
        signed = ("%s.%s" % (header_b64, payload_b64)).encode("ascii")
        alg = header.get("alg")
        if alg == "RS256":
            status, jwks = self.http("id_token", meta["jwks_uri"])
            key = jwk_for(jwks, header.get("kid"))
            verify_rs256(key, signed, signature)
            how = "RS256 with key %s from the JWKS" % key.get("kid")
        elif alg == "HS256":
            expected = hmac.new(self.p["client_secret"].encode(), signed, hashlib.sha256).digest()
            if not hmac.compare_digest(expected, signature):
                raise StepFailed("id_token", "the ID token's HS256 signature does not verify with the client secret")
            how = "HS256 with the client secret"
        else:
            raise StepFailed("id_token", "ID token algorithm %r is not accepted (RS256, HS256)" % alg)
        aud = claims.get("aud")
        problems = []
        if claims.get("iss") != meta["issuer"]:
            problems.append("iss %r is not the issuer %r" % (claims.get("iss"), meta["issuer"]))
        if self.p["client_id"] not in (aud if isinstance(aud, list) else [aud]):
            problems.append("aud %r does not contain the client id %r" % (aud, self.p["client_id"]))
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] < time.time() - 60:
            problems.append("the token expired (exp %r)" % claims.get("exp"))
        if claims.get("nonce") != self.nonce:
            problems.append("the nonce is not the one sent")
        if problems:
            raise StepFailed("id_token", "the ID token is not valid: " + "; ".join(problems))
        self.step("id_token", "signature (%s), iss, aud, exp and nonce valid" % how)
        return claims

    def groups(self, claims):
        group = self.p.get("admin_group")
        if not group:
            return
        groups = claims.get("groups")
        if not isinstance(groups, list):
            raise StepFailed("groups", "the ID token has no groups claim (is a groups scope mapping on the provider?)")
        if self.p["expect_admin"] and group not in groups:
            raise StepFailed("groups", "%s logged in but is not an admin: the groups claim %s lacks %r" % (
                self.p["username"], groups, group))
        if not self.p["expect_admin"] and group in groups:
            raise StepFailed("groups", "%s is an admin (%r in the groups claim) but should not be" % (
                self.p["username"], group))
        self.step("groups", "%r %s the groups claim %s" % (group, "in" if self.p["expect_admin"] else "not in", groups))

    def run(self):
        meta = self.discovery()
        if self.p.get("vault_url"):
            return self.run_vault()
        with Chromium(self.ca_paths(), self.p["timeout"]) as browser:
            code = self.browser_login(browser, self.authorize_url(meta))
        claims = self.validate(meta, self.token(meta, code))
        self.groups(claims)
        return claims

    def ca_paths(self):
        return [path for path in (self.p.get("ca_path"), self.p.get("vault_ca_path")) if path]

    # -- Vault (OpenBao) as the relying party: its OIDC auth method, then its UI ------------------------
    def vault_api(self, step, path, body=None, token=None):
        """Vault's HTTP API: a POST with a body, else a GET (as http sends it)."""
        url = self.p["vault_url"].rstrip("/") + "/v1/" + path
        headers = {"Content-Type": "application/json"}
        if token:
            headers["X-Vault-Token"] = token
        status, answer = self.http(step, url, data=json.dumps(body) if body is not None else None, headers=headers,
                                   ca_path=self.p.get("vault_ca_path"))
        if status >= 400:
            detail = json.dumps(answer)[:300]
            method = "POST" if body is not None else "GET"
            raise StepFailed(step, "Vault answered HTTP %s to %s %s: %s" % (status, method, url, detail))
        return answer

    def run_vault(self):
        """Vault's own OIDC login: Vault's auth_url, Authentik's login in the browser, the code handed to
        Vault's callback (Vault, the real relying party, checks the ID token), the token's policies checked,
        then the UI opened with that token."""
        mount = self.p["vault_mount"].strip("/")
        start = self.vault_api("vault_auth_url", "auth/%s/oidc/auth_url" % mount,
                               {"role": self.p["vault_role"], "redirect_uri": self.p["redirect_uri"]})
        auth_url = ((start or {}).get("data") or {}).get("auth_url")
        if not auth_url:
            raise StepFailed("vault_auth_url", "Vault gave no auth_url for role %r and redirect URI %s (is it in "
                             "the role's allowed_redirect_uris?)" % (self.p["vault_role"], self.p["redirect_uri"]))
        self.state = parse_qs(urlsplit(auth_url).query).get("state", [""])[0]
        self.step("vault_auth_url", "Vault's auth/%s role %r sent the browser to %s" % (
            mount, self.p["vault_role"], auth_url.split("?")[0]))
        with Chromium(self.ca_paths(), self.p["timeout"]) as browser:
            code = self.browser_login(browser, auth_url, keep_screenshot=False)
            try:
                return self.vault_session(browser, mount, code)
            except StepFailed:
                if self.screenshot is None:  # a failure after the IdP keeps its picture too: the page reached
                    self.screenshot = self.p["screenshot"]
                    browser.save_screenshot(self.screenshot)
                raise

    def vault_session(self, browser, mount, code):
        """The code to Vault's callback, the token's policies, the UI with the token; the token revoked after."""
        done = self.vault_api("vault_callback", "auth/%s/oidc/callback?%s" % (
            mount, urlencode({"state": self.state, "code": code})))
        auth = (done or {}).get("auth") or {}
        if not auth.get("client_token"):
            raise StepFailed("vault_callback", "Vault's callback gave no token: %s" % json.dumps(done)[:300])
        try:
            me = self.vault_api("vault_callback", "auth/token/lookup-self", token=auth["client_token"])
            auth["display_name"] = ((me or {}).get("data") or {}).get("display_name", "")
            self.step("vault_callback", "Vault accepted the code and the IdP's ID token: token of %s" % (
                auth["display_name"]))
            claims = self.vault_policies(auth)
            self.vault_ui(browser, auth["client_token"], auth["display_name"])
        finally:  # never mask the step that failed: a token Vault cannot revoke now expires with its TTL
            with contextlib.suppress(StepFailed):
                self.vault_api("vault_logout", "auth/token/revoke-self", {}, token=auth["client_token"])
        return claims

    def vault_policies(self, auth):
        granted = sorted(set(auth.get("policies") or []) | set(auth.get("identity_policies") or []))
        missing = [name for name in self.p["vault_expect_policies"] if name not in granted]
        extra = [name for name in self.p["vault_forbid_policies"] if name in granted]
        if missing:
            raise StepFailed("vault_policies", "%s logged in to Vault without the mapped policies %s (has %s)" % (
                self.p["username"], ", ".join(missing), ", ".join(granted)))
        if extra:
            raise StepFailed("vault_policies", "%s got %s in Vault but is not in the group they are mapped from" % (
                self.p["username"], ", ".join(extra)))
        self.step("vault_policies", "token policies %s" % ", ".join(granted))
        return {"iss": self.p["issuer"], "aud": self.p["client_id"], "vault_policies": granted,
                "vault_user": auth["display_name"]}

    def vault_ui(self, browser, token, who):
        ui = self.p["vault_url"].rstrip("/") + "/ui/vault/auth?with=token"
        with browser_step("vault_ui"):
            landed = browser.ui_token_login(ui, token, who)
        self.screenshot = self.p["screenshot"]
        browser.save_screenshot(self.screenshot)
        self.step("vault_ui", "the UI at %s took the token and shows %s" % (ui.split("?")[0], landed))
        self.step("screenshot", self.screenshot)


def jwk_for(jwks, kid):
    keys = [k for k in (jwks or {}).get("keys", []) if k.get("kty") == "RSA"]
    chosen = [k for k in keys if kid is None or k.get("kid") == kid]
    if not chosen:
        raise StepFailed("id_token", "the JWKS has no RSA key with kid %r" % kid)
    return chosen[0]


def verify_rs256(jwk, signed, signature):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    numbers = rsa.RSAPublicNumbers(int.from_bytes(b64url_decode(jwk["e"]), "big"),
                                   int.from_bytes(b64url_decode(jwk["n"]), "big"))
    try:
        numbers.public_key().verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise StepFailed("id_token", "the ID token's RS256 signature does not verify with the JWKS key %s"
                         % jwk.get("kid")) from None


class Chromium:
    """Headless Chromium in a private temp HOME whose NSS db trusts the CA file (real trust, no ignore list)."""

    def __init__(self, ca_paths, timeout):
        self.ca_paths, self.timeout = list(dict.fromkeys(ca_paths)), timeout
        self.home = tempfile.mkdtemp(prefix="sso-login-")
        self.driver = None
        self.trust = "system trust store"
        self.last_png, self.done = None, False

    def __enter__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        for path in (CHROMIUM, CHROMEDRIVER):
            if not os.access(path, os.X_OK):
                raise StepFailed("browser", "%s is missing: install Debian's chromium and chromium-driver" % path)
        os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or a browser
        env = dict(os.environ, HOME=self.home)
        if self.ca_paths:
            certutil = shutil.which("certutil")
            if not certutil:
                raise StepFailed("browser", "certutil is missing: install Debian's libnss3-tools")
            nssdb = "sql:" + os.path.join(self.home, ".pki", "nssdb")
            os.makedirs(os.path.join(self.home, ".pki", "nssdb"), mode=0o700)
            commands = [[certutil, "-N", "-d", nssdb, "--empty-password"]]
            commands += [[certutil, "-A", "-d", nssdb, "-n", "sso-login-check CA %d" % index, "-t", "C,,", "-i", path]
                         for index, path in enumerate(self.ca_paths)]
            for command in commands:
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                if done.returncode:
                    raise StepFailed("browser", "certutil failed for %s: %s" % (command[-1], done.stderr.strip()))
            self.trust = "CA %s in a private NSS db" % ", ".join(self.ca_paths)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument("--user-data-dir=" + os.path.join(self.home, "profile"))
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        service = Service(executable_path=CHROMEDRIVER, env=env, log_output=os.path.join(self.home, "driver.log"))
        try:
            self.driver = webdriver.Chrome(service=service, options=options)
        except Exception as exc:
            raise StepFailed("browser", "chromium did not start through %s: %s" % (
                CHROMEDRIVER, str(exc).strip()[:400])) from exc
        self.driver.set_page_load_timeout(self.timeout)
        self.version = "Chromium " + self.driver.capabilities.get("browserVersion", "?")
        return self

    def __exit__(self, *exc):
        try:
            if self.driver is not None:
                self.driver.quit()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

    def save_screenshot(self, path):
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        png = self.last_png if self.done else self.driver.get_screenshot_as_png()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(png)

    def reached(self, redirect_uri):
        """The URL at the redirect URI the browser navigated to, if it did: its address bar first, then the
        requests it sent (the app may be unreachable from here, so its page may be an error page)."""
        url = self.driver.current_url
        if url.startswith(redirect_uri):
            return url
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                sent = message["params"]["request"]["url"]
                if sent.split("?")[0] == redirect_uri:
                    return sent
        return None

    def find(self, *ids):
        from selenium.webdriver.common.by import By

        for element_id in ids:
            found = self.driver.find_elements(By.ID, element_id)
            if found:
                return found[0]
        return None

    def page_text(self):
        from selenium.webdriver.common.by import By

        try:
            return " ".join(self.driver.find_element(By.TAG_NAME, "body").text.split())[:300]
        except Exception:
            return ""

    def submit(self, button):
        """Clicks and waits until the document it was on is gone (the next page, or the redirect); the button
        alone going stale proves nothing, a re-render of the same page does that too."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        document = self.driver.find_element(By.TAG_NAME, "html")
        button.click()
        with contextlib.suppress(TimeoutException):  # the loop looks at the page again and names what it shows
            WebDriverWait(self.driver, self.timeout).until(expected_conditions.staleness_of(document))

    def error_page(self):
        """Whether Chromium shows its own error page (unreachable host, untrusted certificate)."""
        try:
            return self.driver.execute_script("return document.documentURI").startswith("chrome-error:")
        except Exception:
            return False

    def landed_png(self):
        """The landing page when the app answered; the last IdP page when the browser shows an error page."""
        if self.error_page() and self.last_png:
            return self.last_png
        return self.driver.get_screenshot_as_png()

    def ui_user_menu(self, who):
        """Opens the UI's user menu so the picture shows who is logged in; says whether it names them."""
        from selenium.webdriver.common.by import By

        menus = self.driver.find_elements(By.CSS_SELECTOR, "button[aria-label='User menu']")
        if not menus:
            return ""
        menus[0].click()
        deadline = time.time() + 5
        while time.time() < deadline:
            if who and who.lower() in self.driver.find_element(By.TAG_NAME, "body").text.lower():
                return ", its user menu naming %s" % who
            time.sleep(0.2)
        return ""

    def ui_token_login(self, url, token, who=""):
        """Vault's UI, token method: the token typed in and sent; returns the page it lands on (the UI leaves
        /ui/vault/auth once the token is accepted)."""
        from selenium.webdriver.common.by import By

        self.done = False
        self.driver.get(url)
        deadline = time.time() + self.timeout
        field = None
        while time.time() < deadline and field is None:
            found = self.driver.find_elements(By.CSS_SELECTOR, "input[name=token]")
            field = found[0] if found else None
            if field is None:
                time.sleep(0.2)
        if field is None:
            raise StepFailed("vault_ui", "Vault's UI at %s shows no token field: %s" % (url, self.page_text()))
        field.send_keys(token)
        self.driver.find_element(By.ID, "auth-submit").click()
        while time.time() < deadline:
            path = urlsplit(self.driver.current_url).path
            if path.startswith("/ui/vault/") and not path.startswith("/ui/vault/auth"):
                return path + self.ui_user_menu(who)
            time.sleep(0.2)
        raise StepFailed("vault_ui", "Vault's UI did not take the token within %ss; it shows %s: %s" % (
            self.timeout, self.driver.current_url.split("?")[0], self.page_text()))

    def log_in(self, url, redirect_uri, username, password, login):
        """Drives the IdP's pages until the browser reaches redirect_uri; returns that URL."""
        self.last_png, self.done = None, False
        self.driver.get(url)
        submitted = False
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            try:
                landed, submitted = self.log_in_once(redirect_uri, username, password, login, submitted)
            except Exception as exc:
                if not page_changed(exc):
                    raise
                landed = None  # the page changed while it was read or filled in: look at it again
            if landed:
                return landed
            time.sleep(0.2)
        raise StepFailed("login", "the browser did not reach %s within %ss; it shows %s: %s" % (
            redirect_uri, self.timeout, self.driver.current_url.split("?")[0], self.page_text()))

    def log_in_once(self, redirect_uri, username, password, login, submitted):
        """One look at the page: the redirect reached (its URL), or the form filled in and sent, or the
        consent given; returns (landed URL or None, whether the login form was sent)."""
        landed = self.reached(redirect_uri)
        if landed:
            self.last_png = self.landed_png()
            self.done = True
            return landed, submitted
        if self.error_page():
            raise StepFailed("login", "the browser could not load %s: %s" % (
                self.driver.current_url.split("?")[0], self.page_text()))
        form = self.find("uid_field")
        if form is not None:
            error = self.find("login-error")
            if submitted and error is not None:
                raise StepFailed("login", "the IdP refused %s's credentials: %s" % (username, error.text))
            # all three found first: a re-render after this makes them stale (retried), never a mix of old
            # and new fields that would send a half-filled form
            field, button = self.find("password"), self.find("login-submit")
            if field is None or button is None:  # the page moved on between the finds: look at it again
                return None, submitted
            form.clear()
            form.send_keys(username)
            field.clear()
            field.send_keys(password)
            self.last_png = self.driver.get_screenshot_as_png()
            self.submit(button)
            if not submitted:
                login.step("login", "login form at %s filled and sent" % self.driver.current_url.split("?")[0])
            return None, True
        accept = self.find("consent-accept")
        if accept is not None:
            self.last_png = self.driver.get_screenshot_as_png()
            self.submit(accept)
            login.step("consent", "consent given")
            return None, submitted
        error = self.find("flow-error")
        if error is not None:
            raise StepFailed("login", "the IdP answered %r: %s" % (self.driver.title, error.text))
        return None, submitted
