"""Registry of FHIR operations ($name) at system, type and instance level; one module per operation."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import request

from app.errors import FHIRError


@dataclass
class Operation:
    name: str
    handler: Callable
    system: bool = False
    types: frozenset[str] | None = None  # None: every type
    type_level: bool = True
    instance: bool = False
    idempotent: bool = False  # GET allowed
    definition: str = ""  # canonical of the OperationDefinition
    documentation: str = ""
    methods: tuple[str, ...] = field(default=("POST",))
    permission: str = "r"  # SMART permission letter needed on the type (instance: that resource's type)


OPERATIONS: dict[str, list[Operation]] = {}


def operation(name: str, **kwargs) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        op = Operation(name, fn, **kwargs)
        if op.idempotent:
            op.methods = ("GET", "POST")
        OPERATIONS.setdefault(name, []).append(op)
        return fn

    return register


def all_operations() -> list[Operation]:
    return [op for ops in OPERATIONS.values() for op in ops]


def _fits(op: Operation, level: str, res_type: str | None) -> bool:
    return (
        (level == "system" and op.system)
        or (level == "type" and op.type_level and (op.types is None or res_type in op.types))
        or (level == "instance" and op.instance and (op.types is None or res_type in op.types))
    )


def dispatch(name: str, res_type: str | None = None, res_id: str | None = None):
    level = "instance" if res_id else ("type" if res_type else "system")
    where = f"{res_type or ''}{'/' + res_id if res_id else ''}/${name}".lstrip("/")
    candidates = OPERATIONS.get(name)
    if not candidates:
        raise FHIRError("not-supported", f"Operation ${name} is not supported", where, status=404)
    op = next((o for o in candidates if _fits(o, level, res_type)), None)
    if op is None:
        raise FHIRError("not-supported", f"Operation ${name} is not available at {level} level"
                        + (f" for {res_type}" if res_type else ""), where, status=404)
    from app import auth as access

    access.note().interaction = "operation"
    access.require(res_type or "*", op.permission, where)
    if request.method not in op.methods:
        raise FHIRError("not-supported", f"${name} takes {' or '.join(op.methods)}", where, status=405)
    return op.handler(res_type=res_type, res_id=res_id)


def load_all() -> None:
    """Import every operation module so that it registers itself."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
