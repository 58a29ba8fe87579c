"""A small evaluator of identity-based IAM policies, and the handler's policy from a template.

Evaluation follows the IAM User Guide ("Policy evaluation logic", "IAM JSON policy elements:
Condition operators", "Single-valued vs. multivalued context keys"), for one identity-based
policy and no other policy type:

- an explicit ``Deny`` that matches wins; else any matching ``Allow`` allows; else the request is
  implicitly denied;
- a statement matches when its ``Action``/``NotAction``, ``Resource``/``NotResource`` (``*`` and
  ``?`` wildcards; actions case-insensitive, resources case-sensitive) and every condition match;
- conditions: all operators, and all keys of an operator, must hold; the values of one key are
  alternatives. Key names are case-insensitive;
- "If the key that you specify in a policy condition is not present in the request context, the
  values do not match and the condition is false. If the policy condition requires that the key is
  not matched, such as StringNotLike or ArnNotLike, and the right key is not present, the condition
  is true" (Condition operators); ``...IfExists`` is true when the key is absent;
- ``ForAllValues:`` is true when the key is absent or empty, and otherwise when every value of
  the request matches; ``ForAnyValue:`` is false when the key is absent or empty, and otherwise
  true when at least one value matches (Single-valued vs. multivalued context keys).

Supported operators: ``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``,
``StringNotEqualsIgnoreCase``, ``StringLike``, ``StringNotLike``, ``ArnEquals``, ``ArnLike``,
``ArnNotEquals``, ``ArnNotLike``, ``Bool``; anything else raises ``ValueError`` rather than being
guessed.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

JsonDict = dict[str, Any]
Context = Mapping[str, list[str]]


class Decision(enum.Enum):
    """The outcome of evaluating a request against a policy."""

    ALLOW = "allow"
    IMPLICIT_DENY = "implicit deny"
    EXPLICIT_DENY = "explicit deny"


@functools.cache
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """``*`` any text, ``?`` one character, everything else literal."""
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _like(value: str, pattern: str) -> bool:
    return _glob(pattern, False).fullmatch(value) is not None


def _arn_like(value: str, pattern: str) -> bool:
    # Each of the six colon-separated parts of an ARN is matched on its own.
    values, patterns = value.split(":", 5), pattern.split(":", 5)
    return len(values) == len(patterns) == 6 and all(map(_like, values, patterns))


_MATCHERS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda value, expected: value == expected,
    "StringEqualsIgnoreCase": lambda value, expected: value.lower() == expected.lower(),
    "StringLike": _like,
    "ArnEquals": _arn_like,  # ArnEquals and ArnLike are the same test
    "ArnLike": _arn_like,
    "Bool": lambda value, expected: value.lower() == expected.lower(),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    # JSON policies may write Bool values as true/false rather than "true"/"false".
    return str(value).lower() if isinstance(value, bool) else str(value)


def condition_holds(operator: str, key: str, expected: Any, context: Context) -> bool:
    """Whether one condition (operator, key, policy values) holds in a request context whose
    keys are lower-case."""
    qualifier, _, base = operator.rpartition(":")
    if qualifier not in ("", "ForAnyValue", "ForAllValues"):
        raise ValueError(f"unsupported condition set operator {qualifier!r}")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    negated = base in _NEGATED
    matcher = _MATCHERS.get(_NEGATED.get(base, base))
    if matcher is None:
        raise ValueError(f"unsupported condition operator {operator!r}")
    values = context.get(key.lower()) or []
    if not values:
        if if_exists or qualifier == "ForAllValues":
            return True
        return negated and qualifier != "ForAnyValue"
    wanted = [_text(v) for v in _as_list(expected)]

    def matches(value: str) -> bool:
        return any(matcher(value, w) for w in wanted) != negated

    if qualifier == "ForAllValues":
        return all(matches(v) for v in values)
    if qualifier == "ForAnyValue":
        return any(matches(v) for v in values)
    found = any(matcher(v, w) for v in values for w in wanted)
    return found != negated


def statements(policy: JsonDict) -> list[JsonDict]:
    """The statements of a policy document (``Statement`` may be one object)."""
    return [s for s in _as_list(policy.get("Statement", [])) if isinstance(s, dict)]


def _element_matches(statement: JsonDict, name: str, value: str, ignore_case: bool) -> bool:
    if name in statement:
        return any(_glob(p, ignore_case).fullmatch(value) for p in _as_list(statement[name]))
    return not any(_glob(p, ignore_case).fullmatch(value) for p in _as_list(statement[f"Not{name}"]))


def statement_matches(statement: JsonDict, action: str, resource: str, context: Context) -> bool:
    """Whether a statement applies to ``action`` on ``resource`` in ``context``."""
    return (
        _element_matches(statement, "Action", action, ignore_case=True)
        and _element_matches(statement, "Resource", resource, ignore_case=False)
        and all(
            condition_holds(operator, key, expected, context)
            for operator, block in statement.get("Condition", {}).items()
            for key, expected in block.items()
        )
    )


def evaluate(policy: JsonDict, action: str, resource: str, context: Context) -> Decision:
    """The decision of one identity-based policy: explicit deny, allow, else implicit deny."""
    decision = Decision.IMPLICIT_DENY
    for statement in statements(policy):
        if statement_matches(statement, action, resource, context):
            if statement.get("Effect") == "Deny":
                return Decision.EXPLICIT_DENY
            decision = Decision.ALLOW
    return decision


# --- the policy a template gives the handler ---------------------------------------------------


def resolve_intrinsics(
    node: Any, template: JsonDict, *, region: str, account: str, owner: str, partition: str = "aws"
) -> Any:
    """``node`` with ``Ref``, ``Fn::GetAtt`` and ``Fn::Join`` resolved; whatever cannot be
    resolved (parameters, other intrinsics, ARNs of other resource types) becomes ``*``.

    ``AWS::StackId`` becomes ``owner``; ``Ref`` of a thing is its ``ThingName`` and
    ``GetAtt <thing>.Arn`` its thing ARN.
    """
    resources = template.get("Resources", {})
    pseudo = {
        "AWS::Partition": partition,
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::StackId": owner,
        "AWS::URLSuffix": "amazonaws.com",
    }

    def is_thing(logical_id: Any) -> bool:
        return isinstance(logical_id, str) and resources.get(logical_id, {}).get("Type") == "AWS::IoT::Thing"

    def thing_name(logical_id: str) -> str:
        # Without a ThingName, CloudFormation generates one.
        name = walk(resources[logical_id].get("Properties", {}).get("ThingName", "*"))
        return name if isinstance(name, str) else "*"

    def intrinsic(function: str, argument: Any) -> Any:
        if function == "Ref":
            return pseudo.get(argument) or (thing_name(argument) if is_thing(argument) else "*")
        if function == "Fn::GetAtt" and argument[1:] == ["Arn"] and is_thing(argument[0]):
            return f"arn:{partition}:iot:{region}:{account}:thing/{thing_name(argument[0])}"
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(walk(p)) for p in parts)
        return "*"

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        if _is_intrinsic(value):
            ((function, argument),) = value.items()
            return intrinsic(function, argument)
        return {k: walk(v) for k, v in value.items()}

    return walk(node)


def _is_intrinsic(node: JsonDict) -> bool:
    return len(node) == 1 and any(key == "Ref" or key.startswith("Fn::") for key in node)


def _role_policies(template: JsonDict, role: str) -> Iterator[JsonDict]:
    """Every policy document attached to the role ``role`` (a logical id) in the template."""
    resources = template.get("Resources", {})
    for policy in resources.get(role, {}).get("Properties", {}).get("Policies", []):
        yield policy["PolicyDocument"]
    for resource in resources.values():
        properties = resource.get("Properties", {})
        attached = resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        if attached and {"Ref": role} in properties.get("Roles", []):
            yield properties["PolicyDocument"]


def handler_policy(
    template: JsonDict, *, owner: str, region: str, account: str, function: str | None = None
) -> JsonDict:
    """The policy of the handler function's role in a synthesized template, ready for
    :meth:`TunnelingEmulator.enforce` (intrinsics resolved, see :func:`resolve_intrinsics`).

    :param owner: what ``AWS::StackId`` stands for (the handler's ``TUNNEL_OWNER``).
    :param function: logical id of the function; by default the template's only function.
    """
    functions = {
        k: r for k, r in template.get("Resources", {}).items() if r["Type"] == "AWS::Lambda::Function"
    }
    if function is None:
        if len(functions) != 1:
            raise ValueError(f"name the handler function: the template has {sorted(functions)}")
        (function,) = functions
    role_arn = functions[function]["Properties"]["Role"]
    if set(role_arn) != {"Fn::GetAtt"}:
        raise ValueError(f"function {function}'s role is not a role of the template: {role_arn}")
    found = [
        s for document in _role_policies(template, role_arn["Fn::GetAtt"][0]) for s in statements(document)
    ]
    document = {"Version": "2012-10-17", "Statement": found}
    resolved: JsonDict = resolve_intrinsics(document, template, region=region, account=account, owner=owner)
    return resolved
