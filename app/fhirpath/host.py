"""The extension API: functions the host application supplies to FHIRPath, and their registry.

A host function is declared once with its arity and result type (the static analysis uses these)
and implemented as `impl(env, focus, *args) -> list`, where `env` is the `Environment` given to
the evaluation (`env.host` holds whatever the host put there), `focus` the input collection and
each argument a collection evaluated on `$this`. Items in and out are engine items; a returned
FHIR JSON dict or float is converted. A registry (`Functions`) is immutable: `with_(…)` gives a
new one, which is passed to `compile_expression(…, functions=…)` and `analyse(…, functions=…)`.

    def html_checks(env, focus):
        return [all(safe_xhtml(item.data) for item in focus)]

    VALIDATION_FUNCTIONS = DEFAULT_FUNCTIONS.with_(
        HostFunction("htmlChecks", html_checks, result="Boolean", many=False)
    )

`DEFAULT_FUNCTIONS` holds the functions whose host data travel on the Environment today:
`memberOf(url)` (asks `env.terminology`, see `engine.Terminology`), `resolve()` (`env.references`),
and SDC's `weight()`/`ordinal()` (`env.weight_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.fhirpath.runtime import FHIRPathError
from app.fhirpath.values import Node, as_collection

HostImpl = Callable[..., list[Any]]


@dataclass(frozen=True)
class HostFunction:
    """A function supplied by the host: name, implementation, arity and what it returns."""

    name: str
    impl: HostImpl
    min_args: int = 0
    max_args: int = 0
    result: str | None = None  # type of each returned item ("Boolean", "Reference", "Resource" …); None: unknown
    many: bool | None = None  # may return several items; None: at most one per input item
    doc: str = ""


class Functions(Mapping[str, HostFunction]):
    """An immutable registry of host functions by name."""

    def __init__(self, functions: tuple[HostFunction, ...] = ()):
        self._by_name = {f.name: f for f in functions}

    def __getitem__(self, name: str) -> HostFunction:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __hash__(self) -> int:
        return hash(tuple(sorted((n, id(f)) for n, f in self._by_name.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Functions) and self._by_name == other._by_name

    def with_(self, *functions: HostFunction) -> Functions:
        """A registry with these functions added (or replacing those of the same name)."""
        return Functions(tuple({**self._by_name, **{f.name: f for f in functions}}.values()))


def _member_of(env: Any, focus: list[Any], url: list[Any]) -> list[Any]:
    terminology = env.terminology
    if terminology is None:
        raise FHIRPathError("memberOf() needs a terminology index")
    if len(url) != 1:
        if not url:
            return []
        raise FHIRPathError("memberOf() expects one ValueSet url")
    target = url[0].data if type(url[0]) is Node else url[0]
    try:
        test = terminology.matcher(target)  # built once per ValueSet by the host
    except Exception as exc:  # the host's own error for an unknown or unusable ValueSet
        if not terminology.has_valueset(target):
            raise FHIRPathError(f"memberOf(): ValueSet {target} is not loaded") from exc
        raise FHIRPathError(f"memberOf(): ValueSet {target} cannot be used ({exc})") from exc
    out = []
    for item in focus:
        verdict = test(item.data if type(item) is Node else item)
        if verdict is not None:
            out.append(verdict)
    return out


def _weight(env: Any, focus: list[Any]) -> list[Any]:
    out = []
    for item in focus:
        coding = item.data if type(item) is Node else item
        if not isinstance(coding, dict):
            continue
        weight = env.weight_of(coding)
        if weight is not None:
            out.append(weight)
    return out


def _resolve(env: Any, focus: list[Any]) -> list[Any]:
    references = getattr(env, "references", None) or {}
    out = []
    for item in focus:
        value = item.data if type(item) is Node else item
        ref = value.get("reference") if isinstance(value, dict) else value
        if isinstance(ref, str) and ref in references:
            out.append(as_collection(references[ref])[0])
    return out


DEFAULT_FUNCTIONS = Functions(
    (
        HostFunction("memberOf", _member_of, 1, 1, "Boolean", None,
                     "FHIR R4 §2.1.9.1.4: is the code, Coding or CodeableConcept in the ValueSet (env.terminology)"),
        HostFunction("resolve", _resolve, 0, 0, "Resource", None,
                     "FHIR R4 §2.1.9.1.2: the resources the references point to (env.references)"),
        HostFunction("weight", _weight, 0, 0, "Decimal", None, "SDC: the itemWeight of answer Codings"),
        HostFunction("ordinal", _weight, 0, 0, "Decimal", None, "SDC (older name of weight())"),
    )
)
