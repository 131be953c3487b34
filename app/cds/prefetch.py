"""Prefetch as the spec says (https://cds-hooks.hl7.org/2.0/#prefetch-template): use, treat null as empty, else fetch.

A value is used as sent; `null` means the client knows there is nothing; an OperationOutcome or a
missing key means the service fetches the template from `fhirServer` with `fhirAuthorization`. When a
needed template can be had neither way the call fails with 412, so that absent data is never taken for
a negative finding.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

import requests

from app.errors import FHIRError, Issue

log = logging.getLogger("lbp.cds")

_TOKEN = re.compile(r"\{\{\s*context\.([A-Za-z0-9_]+)\s*\}\}")
MAX_PAGES = 10
MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # one fetched page; a record larger than this is not a prefetch
DEFAULT_DEADLINE = 5.0  # seconds for the whole prefetch of a call (LBP_CDS_PREFETCH_DEADLINE)


class PrefetchRefused(requests.RequestException):
    """A fetch this service will not make or finish: another origin, past the deadline, too large."""
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="cds-prefetch")
_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        _local.session = session
    return session


def fill(template: str, context: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        v = context.get(match.group(1))
        if not isinstance(v, str):
            raise KeyError(match.group(1))
        return v

    return _TOKEN.sub(value, template)


def precondition(text: str, key: str) -> FHIRError:
    return FHIRError("precondition", text, f"prefetch.{key}", status=412)


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _timeout(timeout: tuple[float, float], until: float) -> tuple[float, float]:
    remaining = until - time.monotonic()
    if remaining <= 0:
        raise PrefetchRefused("the prefetch deadline has passed")
    return min(timeout[0], remaining), min(timeout[1], remaining)


def _body(response: requests.Response, until: float) -> Any:
    """The JSON body, read in chunks against the deadline and the size bound (a slow drip is cut off)."""
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(65536):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise PrefetchRefused("the fhirServer's answer is too large")
            if time.monotonic() > until:
                raise PrefetchRefused("the prefetch deadline has passed")
            chunks.append(chunk)
    finally:
        response.close()
    import orjson

    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise ValueError("not JSON") from None


def _get(url: str, token: str | None, timeout: tuple[float, float], until: float) -> dict[str, Any]:
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = _session().get(url, headers=headers, timeout=_timeout(timeout, until), stream=True)
    if response.status_code >= 400:
        response.close()
    response.raise_for_status()
    body = _body(response, until)
    if not isinstance(body, dict):
        raise ValueError("not a FHIR resource")
    return body


def _fetch(base: str, query: str, token: str | None, timeout: tuple[float, float],
           until: float = float("inf")) -> dict[str, Any] | None:
    url = f"{base.rstrip('/')}/{query}"
    first = _get(url, token, timeout, until)
    if first.get("resourceType") != "Bundle":
        return first
    entries = list(first.get("entry", []) or [])
    page, pages = first, 1
    while pages < MAX_PAGES:
        nxt = next((link.get("url") for link in page.get("link", []) or [] if link.get("relation") == "next"), None)
        if not nxt:
            break
        if not isinstance(nxt, str) or origin(nxt) != origin(base):
            # the EHR's access token goes to the fhirServer's origin only; an incomplete record is not used
            raise PrefetchRefused("a paging link leads away from the fhirServer's origin")
        page = _get(nxt, token, timeout, until)
        entries.extend(page.get("entry", []) or [])
        pages += 1
    # keep matches only: an _include'd or OperationOutcome entry is not the patient's data
    entries = [e for e in entries if (e.get("search") or {}).get("mode", "match") == "match"]
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def _fetch_batch(base: str, wanted: Mapping[str, str], token: str | None,
                 timeout: tuple[float, float], until: float = float("inf")) -> dict[str, Any] | None:
    """All templates as one batch; None when the server cannot do it (the caller falls back to reads)."""
    keys = list(wanted)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": "GET", "url": wanted[k]}} for k in keys]}
    headers = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = _session().post(base.rstrip("/"), json=bundle, headers=headers, timeout=_timeout(timeout, until),
                                   stream=True)
        if response.status_code != 200:
            response.close()
            return None
        answer = _body(response, until)
    except (requests.RequestException, ValueError):
        return None
    if not isinstance(answer, dict):
        return None
    entries = answer.get("entry") if answer.get("type") == "batch-response" else None
    if not isinstance(entries, list) or len(entries) != len(keys):
        return None
    out: dict[str, Any] = {}
    for key, entry in zip(keys, entries, strict=True):
        status = str((entry.get("response") or {}).get("status", ""))
        resource = entry.get("resource")
        if status.startswith("404") and "?" not in wanted[key]:
            out[key] = None
            continue
        if not status.startswith("200") or not isinstance(resource, Mapping):
            return None
        if resource.get("resourceType") == "Bundle":
            if any(link.get("relation") == "next" for link in resource.get("link", []) or []):
                return None  # more than one page: the reads follow the paging
            resource = {"resourceType": "Bundle", "type": "searchset", "entry": [
                e for e in resource.get("entry", []) or [] if (e.get("search") or {}).get("mode", "match") == "match"]}
        out[key] = resource
    return out


def resolve(
    templates: Mapping[str, str],
    body: Mapping[str, Any],
    timeout: tuple[float, float],
    batch: bool = True,
    deadline: float = DEFAULT_DEADLINE,
) -> dict[str, Any]:
    """key -> resource, Bundle or None for every template; FHIRError 412 when one cannot be had.

    With `batch`, the templates go to the server as one FHIR batch (one round trip); a server that
    does not answer the batch with a batch-response of 200s gets the reads one by one (in parallel).
    `deadline` bounds the whole prefetch (batch, reads, paging): what is not fetched by then is a 412.
    """
    until = time.monotonic() + deadline
    sent = body.get("prefetch") or {}
    context = body.get("context") or {}
    server = body.get("fhirServer")
    auth = body.get("fhirAuthorization") or {}
    token = auth.get("access_token") if isinstance(auth, Mapping) else None
    out: dict[str, Any] = {}
    wanted: dict[str, str] = {}
    for key, template in templates.items():
        if key in sent:
            value = sent[key]
            if value is None:
                out[key] = None
                continue
            if isinstance(value, Mapping) and value.get("resourceType") not in (None, "OperationOutcome"):
                out[key] = value
                continue
        try:
            wanted[key] = fill(template, context)
        except KeyError as exc:
            raise precondition(f"prefetch {key} needs context.{exc.args[0]}", key) from None
    if not wanted:
        return out
    if not server:
        raise precondition(
            f"prefetch {', '.join(sorted(wanted))} was not sent and there is no fhirServer to fetch it from",
            next(iter(sorted(wanted))),
        )
    if batch and len(wanted) > 1:
        fetched = _fetch_batch(server, wanted, token, timeout, until)
        if fetched is not None:
            check_fetched(fetched)
            out.update(fetched)
            return out
    futures = {key: _pool.submit(_fetch, server, query, token, timeout, until) for key, query in wanted.items()}
    failed: list[str] = []
    for key, future in futures.items():
        try:
            out[key] = future.result(timeout=max(0.0, until - time.monotonic()))
        except FutureTimeout:
            log.warning("prefetch %s from fhirServer failed: deadline of %.1f s passed", key, deadline)
            failed.append(key)
            continue
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status == 404 and "?" not in wanted[key]:
                out[key] = None  # a read that finds nothing: known absent
                continue
            log.warning("prefetch %s from fhirServer failed: HTTP %s", key, status)
            failed.append(key)
        except (requests.RequestException, ValueError) as exc:
            log.warning("prefetch %s from fhirServer failed: %s", key, type(exc).__name__)
            failed.append(key)
    if failed:
        raise precondition(f"prefetch {', '.join(sorted(failed))} could not be fetched from fhirServer", failed[0])
    check_fetched({key: out[key] for key in wanted})
    return out


def check_fetched(fetched: Mapping[str, Any]) -> None:
    """What the fhirServer answered is checked like a sent prefetch; an invalid resource makes the call a 412."""
    from app.cds.requests import check_prefetch_values

    try:
        check_prefetch_values(fetched, "fetched from fhirServer")
    except FHIRError as err:
        raise FHIRError("precondition", f"the fhirServer answered with an invalid resource: {err.issues[0].text}",
                        status=412, issues=[Issue("error", "processing", i.text, i.expression)
                                            for i in err.issues]) from None
