"""Real browser tests: headless Chromium (Debian `chromium`, `chromium-driver`) through Selenium against gunicorn.

Scenarios: a patient answers STarT Back (high risk) through a link the clinician's page created, and the
clinician page then shows high risk and the multimodal recommendation (YF5); a Danish link renders Danish;
expired and tampered links are refused; the form submits with JavaScript disabled; every screening
questionnaire is completed in a 360×740 window; axe-core finds no serious or critical violations.
Screenshots go to test-artifacts/screenshots/.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from .conftest import CLIENTS, SCREENING, default_answers, questionnaire

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
AXE = Path(__file__).resolve().parent / "fixtures" / "axe.min.js"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="headless browser tests need /usr/bin/chromium and /usr/bin/chromedriver "
           "(apt-get install -y chromium chromium-driver)",
)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn (2 workers) on a free port with a temporary SQLite database and its own SMART clients."""

    def __init__(self, tmp: Path):
        from app.auth.local import register_client

        self.tmp = tmp
        self.clients = tmp / "clients.json"
        for client_id, scope in CLIENTS.items():
            register_client(self.clients, client_id, scope, tmp / "keys")
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp / 'browser.db'}", PORT=str(self.port),
                   WEB_CONCURRENCY="2", LBP_CLIENTS_FILE=str(self.clients), LBP_PUBLIC_BASE_URL=self.base)
        env.pop("LBP_AUTH_DISABLED", None)
        self.log = open(tmp / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "app.wsgi:app"],
            cwd=ROOT, env=env, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if requests.get(self.base + "/fhir/metadata", timeout=2).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.3)
        else:
            self.stop()
            raise AssertionError("server did not start: " + (tmp / "server.log").read_text()[-2000:])

    def token(self, client_id: str) -> str:
        from app.auth.local import token_request

        form = token_request(client_id, self.tmp / "keys" / f"{client_id}.pem", self.base + "/auth/token",
                             CLIENTS[client_id])
        r = requests.post(self.base + "/auth/token", data=form, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def seed_patient(self) -> str:
        from datetime import date, timedelta

        onset = (date.today() - timedelta(days=25)).isoformat()
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "birthDate": "1979-03-02"},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:c", "resource": {
                "resourceType": "Condition", "subject": {"reference": "urn:uuid:p"},
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "M54.5"}]},
                "onsetDateTime": onset},
             "request": {"method": "POST", "url": "Condition"}}]}
        r = requests.post(self.base + "/fhir", json=bundle, timeout=30, headers={
            "Content-Type": "application/fhir+json", "Authorization": f"Bearer {self.token('writer')}"})
        assert r.status_code == 200, r.text
        return r.json()["entry"][0]["response"]["location"].split("/")[1]

    def link(self, patient_id: str, questionnaire_ids: list[str], *, lang: str | None = None) -> str:
        """A patient link made the way a clinician makes one: the pathway page's button (bearer token)."""
        import re

        data = {"questionnaire": questionnaire_ids, "link_lang": lang or ""}
        r = requests.post(f"{self.base}/patients/{patient_id}/pathway/link", data=data, timeout=30,
                          headers={"Authorization": f"Bearer {self.token('clinician')}"})
        assert r.status_code == 200, r.text[:500]
        return re.search(r'id="patient-link">([^<]+)<', r.text).group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("browser"))
    yield srv
    srv.stop()


def _browser(*, javascript: bool = True, width: int = 1280, height: int = 900):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lbp-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}", "--lang=en-GB"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(width, height)
    driver.implicitly_wait(0)
    driver._lbp_profile = profile  # type: ignore[attr-defined]
    return driver


def _close(driver) -> None:
    driver.quit()
    shutil.rmtree(driver._lbp_profile, ignore_errors=True)


@pytest.fixture
def browser():
    driver = _browser()
    yield driver
    _close(driver)


def shot(driver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # the whole page: grow the window to the document's height first
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(height, 400), 6000))
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def axe_violations(driver) -> list[dict]:
    """axe-core (vendored, MPL-2.0) in the page; the serious and critical violations."""
    driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', description: String(e)}]));")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n.get("target") for n in v.get("nodes", [])][:5]}
            for v in result if v.get("impact") in ("serious", "critical")]


def wait_for(driver, condition, timeout: float = 10):
    return WebDriverWait(driver, timeout).until(condition)


def fill(driver, answers: dict[str, list[str]]) -> None:
    """Answers as a patient would: click the options, type into the fields (questions hidden by enableWhen skipped)."""
    for name, values in answers.items():
        inputs = driver.find_elements(By.NAME, name)
        if not inputs:
            continue
        first = inputs[0]
        if not first.is_displayed() and first.get_attribute("type") not in ("radio", "checkbox"):
            continue
        kind = first.get_attribute("type")
        if kind in ("radio", "checkbox"):
            for value in values:
                target = next((i for i in inputs if i.get_attribute("value") == value), None)
                if target is None:
                    continue
                label = target.find_element(By.XPATH, "./ancestor::label[1]")
                if not label.is_displayed():
                    break
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", label)
                if not target.is_selected():
                    label.click()
        elif kind == "date":
            driver.execute_script("arguments[0].value = arguments[1];"
                                  "arguments[0].dispatchEvent(new Event('change', {bubbles: true}))", first, values[0])
        else:
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", first)
            first.clear()
            first.send_keys(values[0])


def submit(driver) -> None:
    button = driver.find_element(By.CSS_SELECTOR, "#questionnaire-form button[type=submit]")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    wait_for(driver, lambda d: "/done" in d.current_url or d.find_elements(By.ID, "error-summary"), 20)


def sign_in(driver, server, next_path: str) -> None:
    driver.get(f"{server.base}/clinician/session?next={next_path}&lang=en")
    driver.find_element(By.ID, "access_token").send_keys(server.token("clinician"))
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    # the sign-in page's own URL names next_path too: wait until the browser has left it
    wait_for(driver, lambda d: "/clinician/session" not in d.current_url and next_path in d.current_url)


def test_patient_answers_start_back_high_risk_and_the_clinician_sees_yf5(server, browser):
    pid = server.seed_patient()
    # the clinician signs in (cookie) and creates the link with the page's button
    sign_in(browser, server, f"/patients/{pid}/pathway")
    assert axe_violations(browser) == []
    shot(browser, "clinician-before")
    for box in browser.find_elements(By.CSS_SELECTOR, 'input[name="questionnaire"]'):
        if (box.get_attribute("value") == "start-back") != box.is_selected():
            browser.execute_script("arguments[0].click()", box)
    browser.find_element(By.ID, "link_lang").send_keys("en")
    browser.execute_script("document.querySelector('form[action*=\"/pathway/link\"]').submit()")
    link = wait_for(browser, lambda d: d.find_elements(By.ID, "patient-link"))[0].get_attribute("href")

    patient = _browser(width=360, height=740)
    try:
        patient.get(link)
        assert patient.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        fill(patient, default_answers(questionnaire("start-back")))  # agree to all, 'extremely' bothersome
        total = patient.find_element(By.CSS_SELECTOR, '[data-score="sbt-total"]')
        wait_for(patient, lambda d: total.text == "9")
        wait_for(patient, lambda d: d.find_element(By.CSS_SELECTOR, '[data-score="sbt-risk"]').text == "High risk")
        assert axe_violations(patient) == []
        shot(patient, "yf5-start-back-form-en-360")
        submit(patient)
        assert "/done" in patient.current_url
        assert "Thank you" in patient.find_element(By.TAG_NAME, "h1").text
        assert axe_violations(patient) == []
        shot(patient, "yf5-start-back-confirmation-en-360")
    finally:
        _close(patient)

    browser.get(f"{server.base}/patients/{pid}/pathway?lang=en")
    screening = browser.find_element(By.ID, "screening").text
    assert "High risk" in screening
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "YF5" in page and "multimodal" in page.lower()
    assert axe_violations(browser) == []
    shot(browser, "clinician-after-high-risk")


def test_danish_link_renders_danish(server, browser):
    pid = server.seed_patient()
    browser.get(server.link(pid, ["start-back"], lang="da"))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "da"
    assert "Mine rygsmerter har" in browser.find_element(By.TAG_NAME, "main").text
    assert browser.find_element(By.CSS_SELECTOR, "button[type=submit]").text == "Send mine svar"
    shot(browser, "start-back-da")


def test_expired_and_tampered_links_are_refused(server, browser):
    pid = server.seed_patient()
    link = server.link(pid, ["nrs-pain"], lang="en")
    browser.get(link[:-3] + ("xyz" if not link.endswith("xyz") else "abc"))
    assert "This link cannot be used" in browser.find_element(By.TAG_NAME, "h1").text
    assert "not valid" in browser.find_element(By.TAG_NAME, "main").text
    assert axe_violations(browser) == []
    shot(browser, "link-tampered")
    # an expired link: signed with the server's secret, expiry in the past
    from app import create_app
    from app.auth.links import make_token

    app = create_app({"DATABASE_URL": f"sqlite:///{server.tmp / 'browser.db'}",
                      "LOAD_ARTIFACTS": False, "CLIENTS_FILE": str(server.clients)})
    with app.test_request_context():
        token = make_token(pid, ["nrs-pain"], lang="en", expires_in=-5)
    app.extensions["lbp"].store.dispose()
    assert requests.get(f"{server.base}/q/{token}", timeout=10).status_code == 410
    browser.get(f"{server.base}/q/{token}")
    assert "expired" in browser.find_element(By.TAG_NAME, "main").text


def test_form_submits_without_javascript(server):
    pid = server.seed_patient()
    link = server.link(pid, ["lbp-intake"], lang="sv")
    driver = _browser(javascript=False, width=360, height=740)
    try:
        driver.get(link)
        # without JavaScript every question is shown; enableWhen is decided by the server
        assert driver.find_element(By.NAME, "q-sick-leave-weeks").is_displayed()
        answers = default_answers(questionnaire("lbp-intake"))
        answers["q-sick-leave"] = ["true"]
        answers.pop("q-sick-leave-weeks")
        fill(driver, answers)
        submit(driver)
        assert driver.find_elements(By.ID, "error-summary")  # sick leave 'yes' makes the weeks required
        kept = driver.find_element(By.NAME, "q-pain-duration-weeks").get_attribute("value")
        assert kept == answers["q-pain-duration-weeks"][0]  # what was typed is kept
        shot(driver, "intake-nojs-error-360")
        fill(driver, {"q-sick-leave-weeks": ["2"]})
        submit(driver)
        assert "/done" in driver.current_url
        assert "Tack" in driver.find_element(By.TAG_NAME, "h1").text
    finally:
        _close(driver)


@pytest.mark.parametrize("qid", SCREENING)
def test_every_screening_questionnaire_completed_on_a_phone(server, qid):
    pid = server.seed_patient()
    link = server.link(pid, [qid], lang="sv")
    driver = _browser(width=360, height=740)
    try:
        driver.get(link)
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 360
        fill(driver, default_answers(questionnaire(qid)))
        assert axe_violations(driver) == []
        shot(driver, f"{qid}-form-360")
        submit(driver)
        errors = driver.find_elements(By.ID, "error-summary")
        assert not errors, errors[0].text if errors else ""
        assert "/done" in driver.current_url
        shot(driver, f"{qid}-done-360")
    finally:
        _close(driver)


def test_enable_when_shows_and_hides_questions_live(server, browser):
    pid = server.seed_patient()
    browser.get(server.link(pid, ["lbp-intake"], lang="en"))
    weeks = browser.find_element(By.ID, "q-sick-leave-weeks")
    assert not weeks.is_displayed()
    fill(browser, {"q-sick-leave": ["true"]})
    try:
        wait_for(browser, lambda d: weeks.is_displayed(), 5)
    except TimeoutException:
        pytest.fail("sick-leave-weeks did not appear after 'yes'")
    fill(browser, {"q-sick-leave": ["false"]})
    wait_for(browser, lambda d: not weeks.is_displayed(), 5)


@pytest.mark.parametrize("variant,lang", [("se", "sv"), ("skane", "sv"), ("midtjylland", "da")])
def test_information_pages_are_accessible(server, browser, variant, lang):
    browser.set_window_size(360, 740)
    browser.get(f"{server.base}/info/{variant}?lang={lang}")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 360
    assert axe_violations(browser) == []
    if variant == "midtjylland":
        assert browser.find_elements(By.CSS_SELECTOR, '.calendar li[aria-current="date"]')
    shot(browser, f"info-{variant}-{lang}-360")


def _seed_named_red_flag(server) -> str:
    """A named 71-year-old with low back pain for 10 days and previous breast cancer (RF4 and RF1 fire)."""
    from datetime import date, timedelta

    active = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {
            "resourceType": "Patient", "birthDate": date(date.today().year - 71, 2, 1).isoformat(),
            "gender": "female", "name": [{"family": "Lindqvist", "given": ["Astrid"]}],
            "identifier": [{"system": "urn:test", "value": "19550201-2386"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:c", "resource": {
            "resourceType": "Condition", "subject": {"reference": "urn:uuid:p"}, "clinicalStatus": active,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "M54.5", "display": "Lumbago"}]},
            "onsetDateTime": (date.today() - timedelta(days=10)).isoformat()},
         "request": {"method": "POST", "url": "Condition"}},
        {"fullUrl": "urn:uuid:ca", "resource": {
            "resourceType": "Condition", "subject": {"reference": "urn:uuid:p"}, "clinicalStatus": active,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C50.9",
                                 "display": "Bröstcancer"}]}, "onsetDateTime": "2019-04-11"},
         "request": {"method": "POST", "url": "Condition"}},
        {"fullUrl": "urn:uuid:nrs", "resource": {
            # pain scored at the first primary-care contact yesterday: T1 (medical assessment within 3 days) runs
            "resourceType": "Observation", "status": "final", "subject": {"reference": "urn:uuid:p"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}, "valueInteger": 7,
            "effectiveDateTime": (date.today() - timedelta(days=1)).isoformat()},
         "request": {"method": "POST", "url": "Observation"}}]}
    r = requests.post(server.base + "/fhir", json=bundle, timeout=30, headers={
        "Content-Type": "application/fhir+json", "Authorization": f"Bearer {server.token('writer')}"})
    assert r.status_code == 200, r.text
    return r.json()["entry"][0]["response"]["location"].split("/")[1]


def _in_first_screen(driver, element_id: str) -> bool:
    return driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;", element_id)


@pytest.mark.parametrize(("label", "width", "height"), [("phone-390", 390, 844), ("desktop-1280", 1280, 900)])
def test_first_screen_holds_name_next_step_deadline_and_fired_flags(server, label, width, height):
    pid = _seed_named_red_flag(server)
    driver = _browser(width=width, height=height)
    try:
        sign_in(driver, server, f"/patients/{pid}/pathway")
        driver.get(f"{server.base}/patients/{pid}/pathway?lang=sv")
        driver.set_window_size(width, height)
        driver.execute_script("window.scrollTo(0, 0)")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"clinician-first-screen-{label}.png"))
        assert driver.execute_script("return window.innerWidth") <= width
        who = driver.find_element(By.CSS_SELECTOR, "#who h1").text
        assert who == "Astrid Lindqvist"
        assert "71 år" in driver.find_element(By.ID, "who").text
        for element_id in ("who", "next-deadline", "flags"):
            assert _in_first_screen(driver, element_id), f"#{element_id} is below the first screen at {label}"
        assert driver.execute_script(
            "return document.querySelector('#next-step .next-title').getBoundingClientRect().bottom "
            "<= window.innerHeight")
        flags = driver.find_element(By.ID, "flags").text
        assert "Röd flagga: tidigare cancersjukdom" in flags and "Bröstcancer (C50.9) (2019-04-11)" in flags
        # the history is folded: its plot is not shown until opened
        assert not driver.find_element(By.ID, "plot").is_displayed()
        assert axe_violations(driver) == []
        shot(driver, f"clinician-full-page-{label}")
    finally:
        _close(driver)


def test_copy_button_appears_with_javascript_and_the_field_without(server):
    pid = server.seed_patient()
    for javascript in (True, False):
        driver = _browser(javascript=javascript, width=390, height=844)
        try:
            sign_in(driver, server, f"/patients/{pid}/pathway")
            driver.execute_script("document.querySelector('form[action*=\"/pathway/link\"]').submit()") \
                if javascript else driver.find_element(
                    By.CSS_SELECTOR, 'form[action*="/pathway/link"] button[type=submit]').click()
            field = wait_for(driver, lambda d: d.find_elements(By.ID, "patient-link-field"))[0]
            assert field.get_attribute("value").startswith(server.base + "/q/")
            assert field.get_attribute("readonly") is not None
            assert driver.find_element(By.ID, "copy-link").is_displayed() is javascript
            assert _in_first_screen(driver, "link-created") or driver.execute_script(
                "return document.getElementById('link-created').getBoundingClientRect().top < window.innerHeight")
        finally:
            _close(driver)


def test_the_clinician_fills_in_and_saves_the_referral_template(server, browser):
    """Sign in naming the Practitioner, open the referral template (pre-filled), save it, see the stored author and
    the referral it is attached to (DK-4)."""
    pid = server.seed_patient()
    writer = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {server.token('writer')}"}
    practitioner = requests.post(server.base + "/fhir/Practitioner", timeout=30, headers=writer, json={
        "resourceType": "Practitioner", "name": [{"given": ["Karin"], "family": "Berg"}]}).json()["id"]
    referral = requests.post(server.base + "/fhir/ServiceRequest", timeout=30, headers=writer, json={
        "resourceType": "ServiceRequest", "status": "draft", "intent": "order",
        "subject": {"reference": f"Patient/{pid}"}, "authoredOn": "2026-12-01",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "183545006"}],
                 "text": "Remiss till ortopedspecialist"}}).json()["id"]
    form_path = f"/patients/{pid}/forms/orthopaedic-referral"
    browser.get(f"{server.base}/clinician/session?next={form_path}&lang=sv")
    browser.find_element(By.ID, "access_token").send_keys(server.token("writer"))
    browser.find_element(By.ID, "practitioner").send_keys(f"Practitioner/{practitioner}")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(browser, lambda d: "/clinician/session" not in d.current_url and form_path in d.current_url)
    browser.get(f"{server.base}{form_path}?lang=sv")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "sv"
    assert browser.find_element(By.ID, "practitioner-name").text == "Karin Berg"
    assert "M54.5" in browser.find_element(By.NAME, "q-diagnosis").get_attribute("value")  # pre-filled
    assert browser.find_element(By.CSS_SELECTOR, f'input[name="attach"][value="ServiceRequest/{referral}"]'
                                ).is_selected()
    assert axe_violations(browser) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "clinician-form-referral-first-screen-sv.png"))
    answers = default_answers(questionnaire("orthopaedic-referral"))
    answers.pop("q-diagnosis")  # the record's diagnosis stays as pre-filled
    fill(browser, answers)
    shot(browser, "clinician-form-referral-sv")
    button = browser.find_element(By.CSS_SELECTOR, "#questionnaire-form button[type=submit]")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    wait_for(browser, lambda d: "/responses/" in d.current_url or d.find_elements(By.ID, "error-summary"), 20)
    errors = browser.find_elements(By.ID, "error-summary")
    assert not errors, errors[0].text if errors else ""
    assert "Karin Berg" in browser.find_element(By.ID, "saved-author").text
    assert f"ServiceRequest/{referral}" in browser.find_element(By.ID, "saved-attached").text
    assert axe_violations(browser) == []
    browser.set_window_size(1280, 900)
    shot(browser, "clinician-form-referral-saved-sv")
    response_id = browser.current_url.split("/responses/")[1].split("?")[0]
    stored = requests.get(f"{server.base}/fhir/QuestionnaireResponse/{response_id}", timeout=30, headers=writer).json()
    assert stored["author"] == {"reference": f"Practitioner/{practitioner}"}
    assert stored["subject"] == {"reference": f"Patient/{pid}"}
    request = requests.get(f"{server.base}/fhir/ServiceRequest/{referral}", timeout=30, headers=writer).json()
    assert request["supportingInfo"] == [{"reference": f"QuestionnaireResponse/{response_id}"}]
