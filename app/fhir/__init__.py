"""The FHIR REST API blueprint: maps URLs to the interaction modules, with access checks and audit."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from app import auth as access
from app.auth import audit
from app.auth.smart import smart_configuration
from app.errors import FHIRError

from . import capability, history, read, search, transaction, write
from .http import check_format
from .operations import dispatch, load_all

bp = Blueprint("fhir", __name__)
load_all()


@bp.before_request
def _negotiate() -> None:
    _note_patient_in_url()  # before authentication, so that a refusal is found under the patient it concerned
    check_format()
    access.authenticate()
    if request.view_args and request.view_args.get("rtype") == "AuditEvent" or request.path.endswith("/_history"):
        current_app.extensions["lbp"].audit.flush()  # the audit trail as read is complete


def _note_patient_in_url() -> None:
    args = request.view_args or {}
    if args.get("rtype") and args.get("rid") and not str(args["rid"]).startswith("$"):
        audit.add_entities(f"{args['rtype']}/{args['rid']}")
    for name in ("subject", "patient"):
        for value in request.args.getlist(name):
            ref = value if "/" in value else f"Patient/{value}"
            if ref.startswith("Patient/") and len(ref) <= 80:
                audit.add_entities(ref)


@bp.after_request
def _audit(response):
    response = audit.record(response)
    if access.note().sensitive:
        # Patient data (or a refusal about it): no shared or browser cache may keep it.
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


@bp.route("/metadata", methods=["GET"])
def metadata():
    return capability.metadata()


@bp.route("/.well-known/smart-configuration", methods=["GET"])
def well_known():
    return jsonify(smart_configuration())


@bp.route("", methods=["POST"])
@bp.route("/", methods=["POST"])
def system_bundle():
    access.note().interaction = "transaction"
    return transaction.process_bundle()


@bp.route("/_history", methods=["GET"])
def system_history():
    access.note().interaction = "history-system"
    access.require("*", "s")  # spans every type: only a wildcard scope covers it
    return history.history()


@bp.route("/$<op>", methods=["GET", "POST"])
def system_operation(op: str):
    return dispatch(op)


@bp.route("/<rtype>", methods=["GET", "POST", "PUT", "DELETE"])
def type_level(rtype: str):
    if request.method == "GET":
        access.require_interaction("search-type", rtype)
        access.note().query = request.query_string.decode()
        return search.search(rtype)
    # A conditional write's outcome answers its query: the search scope on the type is needed as well.
    if request.method == "PUT":
        access.require_interaction("update", rtype)
        access.require(rtype, "s", f"{rtype}?")
        return write.conditional_update(rtype)
    if request.method == "DELETE":
        access.require_interaction("delete", rtype)
        access.require(rtype, "s", f"{rtype}?")
        return write.conditional_delete(rtype)
    access.require_interaction("create", rtype)
    if request.headers.get("If-None-Exist"):
        access.require(rtype, "s", "If-None-Exist")
    return write.create(rtype)


@bp.route("/<rtype>/_search", methods=["POST", "GET"])
def type_search(rtype: str):
    access.require_interaction("search-type", rtype)
    access.note().query = request.query_string.decode() + (
        "&" + request.get_data(as_text=True) if request.method == "POST" else "")
    return search.search(rtype)


@bp.route("/<rtype>/_history", methods=["GET"])
def type_history(rtype: str):
    access.require_interaction("history-type", rtype)
    return history.history(rtype)


@bp.route("/<rtype>/<rid>", methods=["GET", "POST", "PUT", "DELETE"])
def instance_level(rtype: str, rid: str):
    if rid.startswith("$"):
        return dispatch(rid[1:], rtype)
    if request.method == "GET":
        audit.add_entities(f"{rtype}/{rid}")
        access.require_interaction("read", rtype)
        return read.read(rtype, rid)
    if request.method == "PUT":
        audit.add_entities(f"{rtype}/{rid}")
        access.require_interaction("update", rtype)
        return write.update(rtype, rid)
    if request.method == "DELETE":
        audit.add_entities(f"{rtype}/{rid}")
        access.require_interaction("delete", rtype)
        return write.delete(rtype, rid)
    raise FHIRError("not-supported", "POST on an instance is only for operations", f"{rtype}.id", status=405)


@bp.route("/<rtype>/<rid>/$<op>", methods=["GET", "POST"])
def instance_operation(rtype: str, rid: str, op: str):
    audit.add_entities(f"{rtype}/{rid}")
    return dispatch(op, rtype, rid)


@bp.route("/<rtype>/<rid>/_history", methods=["GET"])
def instance_history(rtype: str, rid: str):
    audit.add_entities(f"{rtype}/{rid}")
    access.require_interaction("history-instance", rtype)
    return history.history(rtype, rid)


@bp.route("/<rtype>/<rid>/_history/<vid>", methods=["GET"])
def version_read(rtype: str, rid: str, vid: str):
    audit.add_entities(f"{rtype}/{rid}")
    access.require_interaction("vread", rtype)
    return read.vread(rtype, rid, vid)
