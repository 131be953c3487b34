"""Patient links: signed, expiring, refused with a clear page when expired (410) or tampered (403)."""
from __future__ import annotations

import time

import pytest

from app.auth.links import LinkError, make_token, read_token

from .conftest import make_link


def test_link_names_patient_questionnaires_language_and_variant(web_app):
    with web_app.test_request_context():
        link = read_token(make_token("p-1", ["start-back", "rmdq"], lang="da", variant="midtjylland"))
    assert (link.patient_id, link.questionnaire_ids, link.lang, link.variant) == (
        "p-1", ("start-back", "rmdq"), "da", "midtjylland")


def test_expired_token_is_refused_as_expired(web_app):
    with web_app.test_request_context():
        token = make_token("p-1", ["nrs-pain"], expires_in=60)
        with pytest.raises(LinkError) as err:
            read_token(token, now=time.time() + 61)
    assert err.value.reason == "expired" and err.value.status == 410


def test_secret_is_generated_once_and_kept_in_the_database(web_app):
    from app.auth.links import secret_key

    with web_app.test_request_context():
        first = secret_key()
        web_app.extensions.pop("lbp_web_secret")  # as a second worker would start
        assert secret_key() == first and len(first) == 64


def test_configured_secret_key_signs_links(web_app):
    with web_app.test_request_context():
        token = make_token("p-1", ["nrs-pain"])
        web_app.config["SECRET_KEY"] = "another-secret"
        try:
            with pytest.raises(LinkError):
                read_token(token)
        finally:
            web_app.config["SECRET_KEY"] = None


def test_expired_link_page_is_410_with_an_explanation(web_app, web):
    path = make_link(web_app, "p-1", ["nrs-pain"], lang="en", expires_in=-1)
    r = web.get(path)
    assert r.status_code == 410
    assert "expired" in r.get_data(as_text=True)


def _other_patient(token: str) -> str:
    import base64
    import json

    payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["pid"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{forged}.{signature}"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
    lambda t: _other_patient(t),  # payload changed, signature kept
    lambda t: t.split(".")[0],  # signature missing
])
def test_tampered_link_page_is_403(web_app, web, mangle):
    path = make_link(web_app, "p-1", ["nrs-pain"], lang="sv")
    token = path.removeprefix("/q/")
    r = web.get("/q/" + mangle(token))
    assert r.status_code == 403
    assert "inte giltig" in r.get_data(as_text=True) or "not valid" in r.get_data(as_text=True)


def test_link_uses_public_base_url_when_configured(web_app):
    from app.auth.links import patient_link

    web_app.config["PUBLIC_BASE_URL"] = "https://lbp.example.org/"
    try:
        with web_app.test_request_context():
            url = patient_link("p-1", ["rmdq"])
    finally:
        web_app.config["PUBLIC_BASE_URL"] = None
    assert url.startswith("https://lbp.example.org/q/")


def test_unknown_variant_or_language_is_refused(web_app):
    with web_app.test_request_context(), pytest.raises(ValueError):
        make_token("p-1", ["rmdq"], variant="norway")
    with web_app.test_request_context(), pytest.raises(ValueError):
        make_token("p-1", ["rmdq"], lang="de")
