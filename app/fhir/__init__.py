"""The FHIR REST API blueprint: maps URLs to the interaction modules."""
from __future__ import annotations

from flask import Blueprint, request

from . import capability, history, read, search, transaction, write
from .http import check_format
from .operations import dispatch, load_all

bp = Blueprint("fhir", __name__)
load_all()


@bp.before_request
def _negotiate() -> None:
    check_format()


@bp.route("/metadata", methods=["GET"])
def metadata():
    return capability.metadata()


@bp.route("", methods=["POST"])
@bp.route("/", methods=["POST"])
def system_bundle():
    return transaction.process_bundle()


@bp.route("/_history", methods=["GET"])
def system_history():
    return history.history()


@bp.route("/$<op>", methods=["GET", "POST"])
def system_operation(op: str):
    return dispatch(op)


@bp.route("/<rtype>", methods=["GET", "POST", "PUT"])
def type_level(rtype: str):
    if request.method == "GET":
        return search.search(rtype)
    if request.method == "PUT":
        return write.conditional_update(rtype)
    return write.create(rtype)


@bp.route("/<rtype>/_search", methods=["POST", "GET"])
def type_search(rtype: str):
    return search.search(rtype)


@bp.route("/<rtype>/_history", methods=["GET"])
def type_history(rtype: str):
    return history.history(rtype)


@bp.route("/<rtype>/<rid>", methods=["GET", "POST", "PUT", "DELETE"])
def instance_level(rtype: str, rid: str):
    if rid.startswith("$"):
        return dispatch(rid[1:], rtype)
    if request.method == "GET":
        return read.read(rtype, rid)
    if request.method == "PUT":
        return write.update(rtype, rid)
    if request.method == "DELETE":
        return write.delete(rtype, rid)
    from app.errors import FHIRError

    raise FHIRError("not-supported", "POST on an instance is only for operations", f"{rtype}.id", status=405)


@bp.route("/<rtype>/<rid>/$<op>", methods=["GET", "POST"])
def instance_operation(rtype: str, rid: str, op: str):
    return dispatch(op, rtype, rid)


@bp.route("/<rtype>/<rid>/_history", methods=["GET"])
def instance_history(rtype: str, rid: str):
    return history.history(rtype, rid)


@bp.route("/<rtype>/<rid>/_history/<vid>", methods=["GET"])
def version_read(rtype: str, rid: str, vid: str):
    return read.vread(rtype, rid, vid)
