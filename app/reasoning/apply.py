"""PlanDefinition/$apply and ActivityDefinition/$apply (FHIR R4) over the case features; nothing is stored.

https://hl7.org/fhir/R4/plandefinition-operation-apply.html and "Applying a PlanDefinition"
(https://hl7.org/fhir/R4/plandefinition.html#12.18.3.3): a CarePlan for the subject, instantiating
the PlanDefinition, with a RequestGroup holding one action per applicable PlanDefinition action
(title, description, priority, code, documentation, timing, relatedAction carried; start/stop
conditions carried, applicability conditions evaluated), each action's ActivityDefinition applied
(https://hl7.org/fhir/R4/activitydefinition-operation-apply.html) and the resulting request
referenced from the action. Choices this engine makes where R4 leaves room:

- CarePlan and RequestGroup are `status` draft, `intent` proposal (a recommendation, not an order);
  requests made inside the RequestGroup are `status` draft with `intent` option (R4 RequestIntent:
  "an option for a RequestGroup"); a stand-alone ActivityDefinition/$apply yields intent proposal
  unless the ActivityDefinition says otherwise.
- Everything produced is contained in the CarePlan (the RequestGroup and the requests side by side,
  since a contained resource cannot contain others) and referenced as `#id`.
- An action whose definition is an eca-rule PlanDefinition is expanded in place: that
  PlanDefinition's applicable actions become the action's sub-actions, evaluated with its own
  case-feature Library (else the caller's). A definition that is a Questionnaire yields a Task that
  asks for it (SDC: `Task.input` type `questionnaire`, valueCanonical; `Task.focus` names it too).
- `dynamicValue.path` starting with `action.` sets the RequestGroup action (card text); any other
  path sets the produced request, or the RequestGroup action when the action produces none.
- With a `trigger`, only actions with a matching named-event trigger (or below one) are kept;
  grouping actions without a trigger pass the filter to their children.
- A container (an action naming an eca-rule PlanDefinition, or holding sub-actions without a
  priority of its own) is left out when nothing inside it applies; a recommendation (an action with
  a priority) stays even when none of its suggestions apply. A `remove`/`update` action with
  `input` data requirements refers to the matching draft orders (the selections, else all draft
  orders) in `resource`, one sub-action per order when several match, and is left out when none does.
- Expressions see the case features of the artifact's Library (else the Library of the
  PlanDefinition naming it; else only the patient context: %patient, %today …). Only the features
  the rules read (and what those depend on) are evaluated.
- An ActivityDefinition's `timingDuration`/`timingRange` ("within 14 days") has no anchor, so a
  ServiceRequest or CommunicationRequest receives it as `occurrenceTiming.repeat.bounds[x]`.
- `dynamicValue` results are written with the element's cardinality from the FHIR models
  (`app.fhirmodels`): `reasonCode` becomes a list, `code` stays one CodeableConcept.
- An error in one expression does not stop the rest: the action (or the one dynamicValue) is
  skipped and an Issue names the artifact, the action and the expression.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from app.errors import FHIRError, Issue
from app.fhirmodels import model_class
from app.fhirpath import FHIRPATH, FHIRPathError, compile_expression, evaluate, to_json
from app.reasoning.failures import FAILURES, FeatureFailure
from app.reasoning.features import (
    FeatureValues,
    PatientContext,
    patient_context,
    reference_to,
)
from app.reasoning.knowledge import Artifact, KnowledgeBase
from app.reasoning.needs import features_read
from app.reasoning.outcomes import (
    INCOMPLETE,
    OutcomeWording,
    not_evaluated_action,
    note_incomplete,
    outcome_extensions,
    translated,
)
from app.reasoning.walk import Outcome, PlanWalk, Step, answering_actions

SDC_TEMP = "http://hl7.org/fhir/uv/sdc/CodeSystem/temp"
CPG_COLLECT_WITH = "http://hl7.org/fhir/uv/cpg/StructureDefinition/cpg-collectWith"
MAX_DEPTH = 8

# RequestGroup.action elements copied from PlanDefinition.action (R4), with their primitive extensions
_CARRIED = (
    "prefix",
    "title",
    "description",
    "textEquivalent",
    "priority",
    "code",
    "documentation",
    "timingDateTime",
    "timingAge",
    "timingPeriod",
    "timingDuration",
    "timingRange",
    "timingTiming",
    "type",
    "groupingBehavior",
    "selectionBehavior",
    "requiredBehavior",
    "precheckBehavior",
    "cardinalityBehavior",
)

# What an R4 request resource of each kind can hold (structure, not content): subject element,
# whether it has intent / instantiatesCanonical (list or single), the element for the AD's code,
# and where the AD's timing goes.
_KINDS: dict[str, dict[str, Any]] = {
    "ServiceRequest": {
        "subject": "subject",
        "intent": True,
        "instantiates": "list",
        "code": "code",
        "timing": "occurrence",
        "authored": "authoredOn",
        "requester": "requester",
        "priority": True,
        "doNotPerform": True,
    },
    "MedicationRequest": {
        "subject": "subject",
        "intent": True,
        "instantiates": "list",
        "code": None,
        "timing": None,
        "authored": "authoredOn",
        "requester": "requester",
        "priority": True,
        "doNotPerform": True,
    },
    "CommunicationRequest": {
        "subject": "subject",
        "intent": False,
        "instantiates": None,
        "code": "category",
        "timing": "occurrence",
        "authored": "authoredOn",
        "requester": "requester",
        "priority": True,
        "doNotPerform": True,
    },
    "Task": {
        "subject": "for",
        "intent": True,
        "instantiates": "single",
        "code": "code",
        "timing": "executionPeriod",
        "authored": "authoredOn",
        "requester": "requester",
        "priority": True,
        "doNotPerform": False,
    },
    "DeviceRequest": {
        "subject": "subject",
        "intent": True,
        "instantiates": "list",
        "code": "code",
        "timing": "occurrence",
        "authored": "authoredOn",
        "requester": "requester",
        "priority": True,
        "doNotPerform": False,
    },
    "NutritionOrder": {
        "subject": "patient",
        "intent": True,
        "instantiates": "list",
        "code": None,
        "timing": None,
        "authored": "dateTime",
        "requester": "orderer",
        "priority": False,
        "doNotPerform": False,
    },
    "Appointment": {
        "subject": None,
        "intent": False,
        "instantiates": None,
        "code": "serviceType",
        "timing": None,
        "authored": "created",
        "requester": None,
        "priority": False,
        "doNotPerform": False,
    },
    "CarePlan": {
        "subject": "subject",
        "intent": True,
        "instantiates": "list",
        "code": "category",
        "timing": "period",
        "authored": "created",
        "requester": "author",
        "priority": False,
        "doNotPerform": False,
    },
}
_LIST_CODE = {"category", "serviceType"}


def _now_iso(context: PatientContext) -> str:
    now = context.env.now if context.env.now.tzinfo else context.env.now.astimezone()
    return now.isoformat(timespec="seconds")


def _copy_with_extensions(
    source: Mapping[str, Any], target: dict[str, Any], key: str, to: str | None = None
) -> None:
    to = to or key
    if key in source:
        target[to] = source[key]
    if f"_{key}" in source:
        target[f"_{to}"] = source[f"_{key}"]


_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)$")


@lru_cache(maxsize=4096)
def repeats(type_name: str, keys: tuple[str, ...]) -> bool | None:
    """Whether the element at `keys` under a FHIR type is a list (from the models); None if unknown."""
    cls = model_class(type_name)
    for i, key in enumerate(keys):
        if cls is None:
            return None
        fields: dict[str, Any] = getattr(cls, "model_fields", {})
        field_info = next((f for name, f in fields.items() if (f.alias or name) == key), None)
        if field_info is None:
            return None
        annotation = str(field_info.annotation)
        if i == len(keys) - 1:
            return "List[" in annotation
        element = re.search(r"abc\.(\w+)Type\b", annotation)
        cls = model_class(element.group(1)) if element else None
    return None


def set_path(target: dict[str, Any], path: str, values: Sequence[Any], type_name: str | None = None) -> None:
    """Set a dynamicValue result at a simple path (identifiers and constant indexers).

    Without an indexer, an element that repeats (by the FHIR model of `type_name`, or because it
    already holds a list) receives the results as a list, another element one value (or a list when
    there are several). Empty results remove it.
    """
    segments = path.split(".")
    node: Any = target
    keys: list[str] = []
    for depth, segment in enumerate(segments):
        match = _SEGMENT.match(segment)
        if match is None:
            raise ValueError(f"not a simple path: {path}")
        key, indexers = match.group(1), [int(i) for i in re.findall(r"\[(\d+)\]", match.group(2))]
        keys.append(key)
        last = depth == len(segments) - 1
        listed = repeats(type_name, tuple(keys)) if type_name else None
        if last and not indexers:
            if not values:
                node.pop(key, None)
            elif listed or isinstance(node.get(key), list) or len(values) > 1:
                node[key] = list(values)
            else:
                node[key] = values[0]
            return
        if not indexers and listed and not isinstance(node.get(key), list):
            indexers = [0]
        if indexers:
            container = node.get(key)
            if not isinstance(container, list):
                container = [] if container is None else [container]
                node[key] = container
            for n, index in enumerate(indexers):
                while len(container) <= index:
                    container.append({})
                if last and n == len(indexers) - 1:
                    if values:
                        container[index] = values[0]
                    return
                if n < len(indexers) - 1:
                    if not isinstance(container[index], list):
                        container[index] = []
                    container = container[index]
            node = container[indexers[-1]]
            continue
        child = node.get(key)
        if isinstance(child, list):
            if not child:
                child.append({})
            node = child[0]
        elif isinstance(child, dict):
            node = child
        else:
            node[key] = {}
            node = node[key]


class _Run:
    """One $apply: the shared walk (patient context, features per Library, verdicts) and what was produced."""

    def __init__(
        self,
        kb: KnowledgeBase,
        context: PatientContext,
        trigger: str | None,
        practitioner: Any,
        needed: frozenset[str] | set[str] | None = None,
        eager_features: bool = False,
    ):
        self.kb = kb
        self.context = context
        self.trigger = trigger
        self.practitioner = reference_to(practitioner, "Practitioner") if practitioner else None
        self.walk = PlanWalk(kb, context, trigger=trigger, only=needed, lazy=not eager_features)
        self.issues = self.walk.issues
        self.skipped = self.walk.skipped
        self.contained: list[dict[str, Any]] = []
        self.not_evaluated: list[dict[str, Any]] = []  # the "could not be evaluated" actions made
        self._ids: set[str] = set()
        self._wording = OutcomeWording(kb)

    # -- shared services ----------------------------------------------------------------------
    def features_for(self, library: Artifact | None) -> FeatureValues | None:
        return self.walk.features_for(library)

    def no_features(self) -> FeatureValues:
        return self.walk.no_features()

    def new_id(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9\-.]", "-", base)[:60] or "r"
        candidate, n = base, 1
        while candidate in self._ids:
            n += 1
            candidate = f"{base}-{n}"
        self._ids.add(candidate)
        return candidate

    def skip(self, text: str, path: str, expression: str | None, severity: str = "error") -> None:
        self.walk.skip(text, path, expression, severity)

    # -- PlanDefinition -----------------------------------------------------------------------
    def plan_actions(self, plan: Artifact, library: Artifact | None) -> list[dict[str, Any]]:
        """The RequestGroup actions of `plan`: the walk's steps, each built (or left out)."""
        out = []
        for step in self.walk.plan(plan, library):
            applied = self.build(step)
            if applied is not None:
                out.append(applied)
        return out

    def describe(self, plan: Artifact, action: Mapping[str, Any], path: str) -> str:
        codes = [
            c.get("code")
            for cc in action.get("code", []) or []
            for c in cc.get("coding", [])
            if c.get("code")
        ]
        name = action.get("id") or action.get("title") or ""
        label = f"{plan.label} {path.split('.', 1)[1]}"
        if codes:
            label += f" ({', '.join(codes)})"
        if name:
            label += f" '{name}'"
        return label

    def build(self, step: Step) -> dict[str, Any] | None:
        """The RequestGroup action for one walked step (None: it is left out)."""
        verdict = step.verdict
        if verdict.outcome is Outcome.NOT_EVALUATED:
            return self.could_not_evaluate(step)
        if not verdict.applies:
            return None
        plan, action, path = step.plan, step.action, step.path
        if step.target_problem is not None:
            self.skip(
                f"{self.describe(plan, action, path)}: its definition {action.get('definitionCanonical')} "
                f"{step.target_problem}; the action was skipped",
                f"{path}.definitionCanonical",
                None,
            )
            return None
        out = self.carried(action)
        if verdict.failed:
            # it applies even with those features unknown; say that its evidence is incomplete
            failures = self.failures_behind(step, verdict.failed)
            out["extension"] = [*out.get("extension", []), *outcome_extensions(INCOMPLETE, failures)]
        target = step.target
        children: list[dict[str, Any]] = []
        for child in step.children:
            applied = self.build(child)
            if applied is not None:
                children.append(applied)
        if step.nests_plan and target is not None:
            for key in ("title", "description"):
                if key not in out:
                    _copy_with_extensions(target.resource, out, key)
        return self.finish(step, out, children)

    @staticmethod
    def carried(action: Mapping[str, Any]) -> dict[str, Any]:
        """What a RequestGroup action copies from its PlanDefinition action."""
        out: dict[str, Any] = {}
        if action.get("id"):
            out["id"] = action["id"]
        for key in _CARRIED:
            _copy_with_extensions(action, out, key)
        if action.get("extension"):
            out["extension"] = list(action["extension"])
        kept = [c for c in action.get("condition", []) or [] if c.get("kind") in ("start", "stop")]
        if kept:
            out["condition"] = kept
        if action.get("relatedAction"):
            out["relatedAction"] = [dict(r) for r in action["relatedAction"]]
        return out

    def finish(self, step: Step, out: dict[str, Any], children: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Containers, trigger filtering, draft-order targets, the produced request and dynamic values."""
        action, path, target = step.action, step.path, step.target
        # a container (a nested PlanDefinition, or sub-actions under an action without a priority of
        # its own) disappears when nothing inside it applies; a recommendation with a priority stays
        # even when none of its suggestions apply (e.g. the order it would suggest is drafted already)
        is_container = step.nests_plan or (bool(action.get("action")) and not action.get("priority"))
        produces = target is not None and not step.nests_plan
        if self.trigger is not None and not step.matched:
            # only actions at or below a matching trigger answer a hook
            if not children:
                return None
            produces = False
        elif is_container and not children and not produces:
            return None

        targets: list[dict[str, Any]] = []
        if _action_type(action) in ("remove", "update") and action.get("input"):
            # the draft orders the action is about: the selections first, else every draft order
            targets = self.orders_matching(action["input"], f"{path}.input")
            if not targets:
                return None

        resource: dict[str, Any] | None = None
        if produces and target is not None:
            if target.resource_type == "ActivityDefinition":
                ad_library = self.kb.library_for(target.resource, fallback=step.library)
                resource = self.activity(target, self.features_for(ad_library), in_group=True)
            else:
                resource = self.questionnaire_task(target.resource, in_group=True)
        if (
            resource is not None
            and "priority" not in resource
            and out.get("priority")
            and _KINDS.get(resource["resourceType"], {}).get("priority")
        ):
            resource["priority"] = out["priority"]
        self.dynamic_values(step.plan, action, path, step.features, out, resource)
        if step.verdict.failed:
            note_incomplete(self._wording, out, step.plan.resource.get("language") or "en")
        if resource is not None:
            self.contained.append(resource)
            out["resource"] = {"reference": f"#{resource['id']}"}
        if len(targets) == 1:
            out["resource"] = _order_reference(targets[0])
        elif targets:
            children = [
                {
                    **out,
                    **({"id": f"{out['id']}-{k + 1}"} if out.get("id") else {}),
                    "resource": _order_reference(t),
                }
                for k, t in enumerate(targets)
            ] + children
        if children:
            out["action"] = children
        return out

    # -- could not be evaluated ---------------------------------------------------------------
    def failures_behind(self, step: Step, names: Sequence[str]) -> list[FeatureFailure]:
        features = step.features
        return features.failures_behind(names) if features is not None else []

    def could_not_evaluate(self, step: Step) -> dict[str, Any] | None:
        """A step whose conditions could not be evaluated: a RequestGroup action saying so, and an issue.

        Left out only when no action at or below it answers the hook at all (it would not have
        produced a card for this hook whatever the features held).
        """
        plan, action, path = step.plan, step.action, step.path
        stands_for: list[Mapping[str, Any]]
        if self.trigger is None or step.matched:
            stands_for = [action]
        else:
            stands_for = [a for a in answering_actions(self.kb, action, self.trigger) if a.get("code")]
            if not stands_for:
                return None
        failures = self.failures_behind(step, step.verdict.failed)
        primary = plan.resource.get("language") or "en"
        # what the action is called: its title, else the title of the PlanDefinition it names, else its id
        names = translated(action, "title", primary)
        if not names and action.get("definitionCanonical"):
            nested = self.kb.resolve(action["definitionCanonical"])
            if nested is not None:
                names = translated(nested, "title", nested.get("language") or primary)
        if not names and action.get("id"):
            names = {primary: str(action["id"])}
        out = not_evaluated_action(
            self._wording, action, stands_for=stands_for, name_texts=names, primary=primary, failures=failures
        )
        causes = "; ".join(f"{f.library} {f.feature}: {f.reason}" for f in failures)
        where = step.verdict.where or path
        compiled = plan.expressions.get(where)
        self.issues.append(
            Issue(
                # a condition that raised by itself is an error of the artifact; one that read a
                # failed feature is incomplete because of that feature (reported as an error)
                "warning" if step.verdict.failed else "error",
                "incomplete",
                f"{self.describe(plan, action, path)} could not be evaluated: {step.verdict.problem}"
                + (f" ({causes})" if causes else "")
                + "; returned as an action that says so",
                [where],
                diagnostics=compiled.text if compiled is not None else None,
            )
        )
        FAILURES.rule_not_evaluated(plan.label, str(action.get("id") or path))
        self.not_evaluated.append(out)
        return out

    def orders_matching(self, requirements: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
        """Draft orders meeting any of the dataRequirements (type and codeFilters)."""
        pool = self.context.selections or self.context.draft_orders
        found = []
        for order in pool:
            for requirement in requirements:
                if requirement.get("type") not in (None, order.get("resourceType")):
                    continue
                if all(
                    self.code_filter_holds(order, f, path) for f in requirement.get("codeFilter", []) or []
                ):
                    found.append(order)
                    break
        return found

    def code_filter_holds(self, order: Mapping[str, Any], code_filter: Mapping[str, Any], path: str) -> bool:
        element = code_filter.get("path") or code_filter.get("searchParam") or "code"
        try:
            compiled = compile_expression(element, artifact="dataRequirement", path=f"{path}.codeFilter.path")
            values = to_json(evaluate(compiled, order, None, self.context.env))
        except (FHIRError, FHIRPathError):
            return False
        terminology = self.kb.terminology
        for value in values:
            if code_filter.get("valueSet"):
                if terminology.has_valueset(code_filter["valueSet"]) and terminology.member_of(
                    value, code_filter["valueSet"]
                ):
                    return True
            codings = value.get("coding", [value]) if isinstance(value, dict) else []
            for wanted in code_filter.get("code", []) or []:
                if any(
                    c.get("code") == wanted.get("code") and wanted.get("system") in (None, c.get("system"))
                    for c in codings
                ):
                    return True
        return False

    def dynamic_values(
        self,
        artifact: Artifact,
        owner: Mapping[str, Any],
        path: str,
        features: FeatureValues | None,
        rg_action: dict[str, Any] | None,
        resource: dict[str, Any] | None,
    ) -> None:
        for j, dv in enumerate(owner.get("dynamicValue", []) or []):
            expression = dv.get("expression") or {}
            where = f"{path}.dynamicValue[{j}].expression.expression"
            target_path = dv.get("path", "")
            what = (
                self.describe(artifact, owner, path) if rg_action is not None else artifact.label
            ) + f": dynamicValue {target_path}"
            if expression.get("language") != FHIRPATH:
                self.skip(
                    f"{what}: language {expression.get('language')!r} is not supported; skipped",
                    where,
                    expression.get("expression"),
                    "warning",
                )
                continue
            compiled = artifact.expressions.get(where)
            if compiled is None:
                continue
            # a failed feature reads as unknown here too: the text is what it would be without the fact
            features = features or self.no_features()
            try:
                values = to_json(features.evaluate(compiled))
                for owned in (rg_action, resource):
                    # elements copied from the artifact are shared with it: write on a copy
                    head = re.split(r"[.\[]", target_path.removeprefix("action."), maxsplit=1)[0]
                    if owned is not None and isinstance(owned.get(head), (list, dict)):
                        owned[head] = copy.deepcopy(owned[head])
                if target_path.startswith("action.") and rg_action is not None:
                    set_path(rg_action, target_path[len("action.") :], values, "RequestGroupAction")
                elif resource is not None:
                    set_path(resource, target_path, values, resource["resourceType"])
                elif rg_action is not None:
                    set_path(rg_action, target_path, values, "RequestGroupAction")
            except Exception as exc:
                self.skip(
                    f"{what}: could not be evaluated ({exc}); skipped: {compiled.text}",
                    where,
                    compiled.text,
                    "warning",
                )

    # -- ActivityDefinition -------------------------------------------------------------------
    def activity(self, ad: Artifact, features: FeatureValues | None, *, in_group: bool) -> dict[str, Any]:
        definition = ad.resource
        kind = definition.get("kind") or "Task"
        shape = _KINDS.get(kind, {"subject": "subject", "intent": True, "instantiates": None, "code": "code"})
        canonical = ad.url + (f"|{ad.version}" if ad.version else "") if ad.url else None
        resource: dict[str, Any] = {
            "resourceType": kind,
            "id": self.new_id(definition.get("id", kind.lower())),
        }
        if definition.get("profile"):
            resource["meta"] = {"profile": [definition["profile"]]}
        resource["status"] = "proposed" if kind == "Appointment" else "draft"
        if canonical and shape.get("instantiates") == "list":
            resource["instantiatesCanonical"] = [canonical]
        elif canonical and shape.get("instantiates") == "single":
            resource["instantiatesCanonical"] = canonical
        if shape.get("intent"):
            resource["intent"] = "option" if in_group else (definition.get("intent") or "proposal")
        if shape.get("priority") and definition.get("priority"):
            resource["priority"] = definition["priority"]
        if shape.get("doNotPerform") and definition.get("doNotPerform") is not None:
            resource["doNotPerform"] = definition["doNotPerform"]
        code_key = shape.get("code")
        if definition.get("code") and code_key:
            resource[code_key] = [definition["code"]] if code_key in _LIST_CODE else definition["code"]
        subject_key = shape.get("subject")
        if subject_key and self.context.subject:
            resource[subject_key] = dict(self.context.subject)
        if kind == "Appointment" and self.context.subject:
            resource["participant"] = [{"actor": dict(self.context.subject), "status": "needs-action"}]
        encounter = self.context.extra.get("encounter")
        if encounter and kind in (
            "ServiceRequest",
            "MedicationRequest",
            "CommunicationRequest",
            "Task",
            "DeviceRequest",
            "NutritionOrder",
            "CarePlan",
        ):
            resource["encounter"] = reference_to(encounter, "Encounter")
        if shape.get("authored"):
            resource[shape["authored"]] = _now_iso(self.context)
        if shape.get("requester") and self.practitioner:
            resource[shape["requester"]] = dict(self.practitioner)
        timing_to = shape.get("timing")
        if timing_to:
            for suffix in ("DateTime", "Period", "Timing"):
                if f"timing{suffix}" in definition:
                    if timing_to == "executionPeriod":
                        if suffix == "Period":
                            resource["executionPeriod"] = definition["timingPeriod"]
                    elif timing_to == "period":
                        if suffix == "Period":
                            resource["period"] = definition["timingPeriod"]
                    else:
                        resource[f"{timing_to}{suffix}"] = definition[f"timing{suffix}"]
            if timing_to == "occurrence":
                # "within 14 days": a Duration (or Range) has no anchor; Timing.repeat.bounds says it as such
                for suffix in ("Duration", "Range"):
                    if f"timing{suffix}" in definition and "occurrenceTiming" not in resource:
                        resource["occurrenceTiming"] = {
                            "repeat": {f"bounds{suffix}": definition[f"timing{suffix}"]}
                        }
        if kind == "ServiceRequest":
            roles = [p["role"] for p in definition.get("participant", []) if p.get("role")]
            if len(roles) == 1:
                resource["performerType"] = roles[0]
            elif roles:
                # several participants (a team conference): performerType holds one role, so the request names a
                # CareTeam by role, contained beside it (a contained resource cannot contain others)
                team: dict[str, Any] = {
                    "resourceType": "CareTeam",
                    "id": self.new_id(f"{definition.get('id', 'request')}-team"),
                    "status": "proposed",
                    "participant": [{"role": [role]} for role in roles],
                }
                if self.context.subject:
                    team["subject"] = dict(self.context.subject)
                self.contained.append(team)
                resource["performer"] = [{"reference": f"#{team['id']}"}]
            if definition.get("bodySite"):
                resource["bodySite"] = definition["bodySite"]
            if definition.get("quantity"):
                resource["quantityQuantity"] = definition["quantity"]
            if definition.get("location"):
                resource["locationReference"] = [definition["location"]]
        elif kind == "MedicationRequest":
            if "productCodeableConcept" in definition:
                resource["medicationCodeableConcept"] = definition["productCodeableConcept"]
            if "productReference" in definition:
                resource["medicationReference"] = definition["productReference"]
            if definition.get("dosage"):
                resource["dosageInstruction"] = definition["dosage"]
            if definition.get("quantity"):
                resource["dispenseRequest"] = {"quantity": definition["quantity"]}
        elif kind == "CommunicationRequest":
            if definition.get("description"):
                payload: dict[str, Any] = {}
                _copy_with_extensions(definition, payload, "description", "contentString")
                resource["payload"] = [payload]
        elif kind == "Task":
            _copy_with_extensions(definition, resource, "title", "description")
            questionnaire = self.questionnaire_of(definition)
            if questionnaire:
                self.ask_for(resource, questionnaire)
        self.dynamic_values(ad, definition, "ActivityDefinition", features, None, resource)
        return resource

    def questionnaire_of(self, definition: Mapping[str, Any]) -> str | None:
        """The Questionnaire an ActivityDefinition collects: cpg-collectWith, another canonical
        extension, or a depends-on/composed-of relatedArtifact naming a Questionnaire."""
        candidates = [
            e.get("valueCanonical")
            for e in definition.get("extension", []) or []
            if e.get("url") == CPG_COLLECT_WITH
        ]
        candidates += [
            e.get("valueCanonical") for e in definition.get("extension", []) or [] if e.get("valueCanonical")
        ]
        candidates += [
            r.get("resource")
            for r in definition.get("relatedArtifact", []) or []
            if r.get("type") in ("depends-on", "composed-of") and r.get("resource")
        ]
        for canonical in candidates:
            if canonical and (self.kb.artifact(canonical, "Questionnaire") or "/Questionnaire/" in canonical):
                return str(canonical)
        return None

    def ask_for(self, task: dict[str, Any], canonical: str) -> None:
        questionnaire = self.kb.resolve(canonical, "Questionnaire")
        focus: dict[str, Any] = {"reference": canonical}
        if questionnaire and questionnaire.get("title"):
            focus["display"] = questionnaire["title"]
        task["focus"] = focus
        if "code" not in task:
            task["code"] = {"coding": [{"system": SDC_TEMP, "code": "complete-questionnaire"}]}
        task["input"] = [
            *[i for i in task.get("input", []) if i.get("valueCanonical") != canonical],
            {
                "type": {"coding": [{"system": SDC_TEMP, "code": "questionnaire"}]},
                "valueCanonical": canonical,
            },
        ]

    def questionnaire_task(self, questionnaire: Mapping[str, Any], *, in_group: bool) -> dict[str, Any]:
        canonical = questionnaire.get("url", f"Questionnaire/{questionnaire.get('id')}")
        task: dict[str, Any] = {
            "resourceType": "Task",
            "id": self.new_id(f"task-{questionnaire.get('id', 'questionnaire')}"),
            "status": "draft",
            "intent": "option" if in_group else "proposal",
        }
        _copy_with_extensions(questionnaire, task, "title", "description")
        if self.context.subject:
            task["for"] = dict(self.context.subject)
        task["authoredOn"] = _now_iso(self.context)
        if self.practitioner:
            task["requester"] = dict(self.practitioner)
        self.ask_for(task, canonical)
        return task


def variables_read(kb: KnowledgeBase, artifact: Artifact) -> set[str]:
    """Every %-name the expressions of a definition read, following the PlanDefinitions and
    ActivityDefinitions it names: the case features $apply has to evaluate."""
    names: set[str] = set()
    seen: set[str] = set()
    pending = [artifact]
    while pending:
        current = pending.pop()
        if current.label in seen:
            continue
        seen.add(current.label)
        for compiled in current.expressions.values():
            names |= compiled.variables
        stack = list(current.resource.get("action", []) or [])
        while stack:
            action = stack.pop()
            stack.extend(action.get("action", []) or [])
            if action.get("definitionCanonical"):
                target = kb.artifact(action["definitionCanonical"])
                if target is not None and target.resource_type in ("PlanDefinition", "ActivityDefinition"):
                    pending.append(target)
    return names


def _action_type(action: Mapping[str, Any]) -> str | None:
    for coding in (action.get("type") or {}).get("coding", []) or []:
        if coding.get("code"):
            return str(coding["code"])
    return None


def _order_reference(order: Mapping[str, Any]) -> dict[str, Any]:
    return {"reference": f"{order.get('resourceType')}/{order.get('id')}"}


def _goal(run: _Run, goal: Mapping[str, Any], context: PatientContext) -> dict[str, Any]:
    """A proposed Goal from PlanDefinition.goal (R4: "Create goal elements in the CarePlan")."""
    out: dict[str, Any] = {
        "resourceType": "Goal",
        "id": run.new_id(f"goal-{goal.get('id', 'goal')}"),
        "lifecycleStatus": "proposed",
        "description": goal.get("description", {"text": ""}),
        "subject": dict(context.subject or {}),
    }
    for key in ("category", "priority"):
        if key in goal:
            out[key] = goal[key]
    if "start" in goal:
        out["startCodeableConcept"] = goal["start"]
    targets = []
    for t in goal.get("target", []) or []:
        target = {k: v for k, v in t.items() if k.startswith("detail") or k == "measure"}
        if "due" in t:
            target["dueDuration"] = t["due"]
        targets.append(target)
    if targets:
        out["target"] = targets
    return out


def _plan_artifact(
    kb: KnowledgeBase, plan_definition: Mapping[str, Any] | str | Artifact, resource_type: str
) -> Artifact:
    if isinstance(plan_definition, Artifact):
        return plan_definition
    found = kb.artifact(plan_definition, resource_type)
    if found is None or found.resource_type != resource_type:
        raise FHIRError(
            "not-found", f"{resource_type} {plan_definition} is not loaded", resource_type.lower()
        )
    return found


def _apply_context(
    kb: KnowledgeBase, context: PatientContext | None, record: Any, fail_features: Iterable[str], **patient: Any
) -> PatientContext:
    """The caller's prepared context, or one built from the record; $apply always needs a subject."""
    if context is None:
        context = patient_context(record, terminology=kb.terminology, **patient)
    forced = frozenset(fail_features)
    if forced - context.fail_features:
        context = dataclasses.replace(context, fail_features=context.fail_features | forced)
    if context.subject is None:
        raise FHIRError("required", "$apply needs a subject", "subject")
    return context


def apply_plan_definition(
    kb: KnowledgeBase,
    plan_definition: Mapping[str, Any] | str | Artifact,
    *,
    subject: Any,
    record: Any,
    encounter: Any = None,
    practitioner: Any = None,
    today: date | datetime | None = None,
    trigger: str | None = None,
    draft_orders: Any = (),
    selections: Sequence[Any] = (),
    context: PatientContext | None = None,
    fail_features: Iterable[str] = (),
    eager_features: bool = False,
) -> tuple[dict[str, Any], list[Issue]]:
    """PlanDefinition/$apply: (CarePlan with the RequestGroup and requests contained, issues).

    `plan_definition` is a canonical, `Type/id`, a resource dict or a loaded Artifact; `record` is
    what `features.record_resources` accepts. A prepared `context` may be passed to share one
    patient context between several calls (the other patient arguments are then ignored).

    `fail_features` (fault injection): case feature names forced to fail as if their expressions
    raised; added to the context's own `fail_features`. Every rule whose condition reads a failed
    feature, directly or not, then comes back as a "could not be evaluated" action
    (docs/fail-safe.md).

    Case features are computed when a rule first reads them; `eager_features` computes every feature
    the hook's rules may read up front instead (the same result: the baseline the benchmark compares with).
    """
    plan = _plan_artifact(kb, plan_definition, "PlanDefinition")
    context = _apply_context(kb, context, record, fail_features, subject=subject, today=today,
                             draft_orders=draft_orders, selections=selections, encounter=encounter,
                             practitioner=practitioner)
    run = _Run(kb, context, trigger, practitioner, features_read(kb, plan, trigger), eager_features)
    library = kb.library_for(plan.resource)
    if library is None and plan.resource.get("library"):
        run.issues.append(
            Issue(
                "error",
                "not-found",
                f"{plan.label}: Library {plan.resource['library'][0]} is not loaded",
                ["PlanDefinition.library[0]"],
            )
        )
    actions = run.plan_actions(plan, library)
    canonical = (
        plan.url + (f"|{plan.version}" if plan.version else "") if plan.url else f"PlanDefinition/{plan.id}"
    )
    now = _now_iso(context)
    subject_ref: dict[str, Any] = dict(context.subject or {})
    group: dict[str, Any] = {
        "resourceType": "RequestGroup",
        "id": run.new_id("requestgroup"),
        "instantiatesCanonical": [canonical],
        "status": "draft",
        "intent": "proposal",
        "subject": dict(subject_ref),
        "authoredOn": now,
    }
    care_plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "contained": [group, *run.contained],
        "instantiatesCanonical": [canonical],
        "status": "draft",
        "intent": "proposal",
        "subject": dict(subject_ref),
        "created": now,
        "activity": [{"reference": {"reference": f"#{group['id']}"}}],
    }
    for key in ("title", "description"):
        _copy_with_extensions(plan.resource, care_plan, key)
    if "encounter" in context.extra:
        encounter_ref = reference_to(context.extra["encounter"], "Encounter")
        group["encounter"] = encounter_ref
        care_plan["encounter"] = encounter_ref
    if run.practitioner:
        group["author"] = dict(run.practitioner)
        care_plan["author"] = dict(run.practitioner)
    goals = [_goal(run, goal, context) for goal in plan.resource.get("goal", []) or []]
    if goals:
        care_plan["contained"].extend(goals)
        care_plan["goal"] = [{"reference": f"#{g['id']}"} for g in goals]
    if actions:
        group["action"] = actions
    if run.skipped:
        run.issues.append(
            Issue(
                "warning",
                "incomplete",
                f"{len(run.skipped)} part(s) of {plan.label} were skipped because of errors; "
                "the result may be incomplete",
                ["PlanDefinition"],
            )
        )
    return care_plan, run.issues


def apply_activity_definition(
    kb: KnowledgeBase,
    activity_definition: Mapping[str, Any] | str | Artifact,
    *,
    subject: Any,
    record: Any = (),
    encounter: Any = None,
    practitioner: Any = None,
    today: date | datetime | None = None,
    draft_orders: Any = (),
    selections: Sequence[Any] = (),
    context: PatientContext | None = None,
) -> tuple[dict[str, Any], list[Issue]]:
    """ActivityDefinition/$apply: (the request resource, issues); dynamicValues see the AD's Library features."""
    definition = _plan_artifact(kb, activity_definition, "ActivityDefinition")
    context = _apply_context(kb, context, record, (), subject=subject, today=today, draft_orders=draft_orders,
                             selections=selections, encounter=encounter, practitioner=practitioner)
    run = _Run(kb, context, None, practitioner, variables_read(kb, definition))
    library = kb.library_for(definition.resource)
    resource = run.activity(definition, run.features_for(library), in_group=False)
    return resource, run.issues
