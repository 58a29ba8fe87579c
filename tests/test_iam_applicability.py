"""Every condition key of every IAM policy the app synthesizes can be in the request it guards.

IAM evaluates a condition against the request context, and "if the key that you specify in a
policy condition is not present in the request context, the values do not match and the condition
is false" (IAM User Guide, "IAM JSON policy elements: Condition operators"; the Condition element
itself: "IAM JSON policy elements: Condition"). Which keys a request carries depends on the action
and on the resource: the IAM Service Authorization Reference ("Actions, resources, and condition
keys for AWS IoT", and so on per service) lists them per action and per resource type, and the
IAM User Guide lists the global ones ("AWS global condition context keys"). So a statement that
conditions an action on a key the reference does not list for it and its resource is a silent
defect: an ``Allow`` never matches (the permission is missing and the call is denied) and a
``Deny`` never denies.

The handler's policy once gave ``iot:ListTagsForResource``, ``iot:TagResource`` and
``iot:UntagResource`` an ``aws:ResourceTag`` condition, which the reference lists for
tunnels only with Describe, Close and Rotate. This test keeps that class of mistake from coming
back: for every statement of every identity-based policy (``AWS::IAM::Policy``,
``AWS::IAM::ManagedPolicy``, inline policies of ``AWS::IAM::Role``) in every synthesized template,
for every action and every resource (intrinsics resolved, what cannot be resolved taken as a
wildcard), every condition key must apply (:mod:`tests.rig.iam_reference`). Operators with the
``IfExists`` suffix are written for keys that may be absent (the condition then holds), so their
keys are exempt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.cdk_helpers import FAKE_ACCOUNT, FAKE_REGION, FAKE_STACK_ID, Assembly, ConstructSynth
from tests.rig.iam_policy import resolve_intrinsics, statements
from tests.rig.iam_reference import UnknownActionError, condition_keys, key_applies

JsonDict = dict[str, Any]
TUNNELS = f"arn:aws:iot:{FAKE_REGION}:{FAKE_ACCOUNT}:tunnel/*"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_documents(template: JsonDict) -> Iterator[tuple[str, JsonDict]]:
    """``(name, document)`` of every identity-based policy of a template."""
    for name, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield name, properties["PolicyDocument"]
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                yield f"{name}/{policy['PolicyName']}", policy["PolicyDocument"]


def _key_findings(action: str, resource: str, condition: JsonDict) -> list[str]:
    service, _, name = action.partition(":")
    findings = []
    for operator, block in condition.items():
        if operator.endswith("IfExists"):  # written for a key that may be absent
            continue
        for key in block:
            if not key_applies(key, service, name, resource):
                listed = ", ".join(sorted(condition_keys(service, name, resource))) or "none"
                findings.append(
                    f"{action} on {resource}: condition key {key} ({operator}) is never in the "
                    f"request context (the reference lists: {listed}; and the global keys)"
                )
    return findings


def statement_findings(statement: JsonDict) -> list[str]:
    """What is wrong with a (resolved) statement's condition keys: one line per action, resource
    and key that does not apply, or per action the reference does not know."""
    if "Action" not in statement:
        return ["NotAction cannot be checked: name the actions"]
    # NotResource leaves any resource: every resource type of the action may be the one.
    resources = [str(r) for r in _as_list(statement.get("Resource", "*"))]
    findings = []
    for action in _as_list(statement["Action"]):
        service, _, name = action.partition(":")
        try:
            condition_keys(service, name, "*")  # the action must be in the reference
        except UnknownActionError as error:
            findings.append(f"{action}: {error}")
            continue
        findings += [f for r in resources for f in _key_findings(action, r, statement.get("Condition", {}))]
    return findings


def template_findings(path: Path) -> list[str]:
    """Findings of every statement of every identity-based policy of a template file."""
    template = json.loads(path.read_text())
    stack = path.name.removesuffix(".template.json")
    findings = []
    for name, document in policy_documents(template):
        resolved = resolve_intrinsics(
            document, template, region=FAKE_REGION, account=FAKE_ACCOUNT, owner=FAKE_STACK_ID
        )
        for statement in statements(resolved):
            where = f"{stack} {name} statement {statement.get('Sid', '(no Sid)')!r}"
            findings += [f"{where}: {finding}" for finding in statement_findings(statement)]
    return findings


def assembly_findings(assembly: Assembly) -> list[str]:
    paths = assembly.template_paths()
    assert paths, f"no templates in {assembly.outdir}"
    return [finding for path in paths for finding in template_findings(path)]


# --- the app and the construct stacks ------------------------------------------------------------


def test_condition_keys_of_the_app_policies_apply(cli_assembly: Assembly) -> None:
    findings = assembly_findings(cli_assembly)

    assert not findings, "condition keys that no request carries:\n" + "\n".join(findings)


def test_condition_keys_of_the_construct_stacks_apply(construct_synth: ConstructSynth) -> None:
    findings = assembly_findings(construct_synth.assembly)

    assert not findings, "condition keys that no request carries:\n" + "\n".join(findings)


def test_the_construct_stacks_include_the_thing_group_narrowing(construct_synth: ConstructSynth) -> None:
    """The provider's optional iot:ThingGroupArn condition is among the statements checked above."""
    template = construct_synth.template("NarrowProvider")
    narrowed = {
        statement["Sid"]
        for _, document in policy_documents(template)
        for statement in statements(document)
        if "iot:ThingGroupArn" in statement.get("Condition", {}).get("ForAnyValue:ArnLike", {})
    }

    assert narrowed == {"OpenTunnelsTaggedWithThisStack", "RotateTunnelsOfTheWiredThings"}


# --- the checker itself, on hand-written statements ----------------------------------------------


def test_checker_catches_a_resource_tag_condition_on_the_tag_actions() -> None:
    bad = {
        "Effect": "Allow",
        "Action": ["iot:DescribeTunnel", "iot:ListTagsForResource", "iot:TagResource", "iot:UntagResource"],
        "Resource": TUNNELS,
        "Condition": {"StringEquals": {"aws:ResourceTag/owner": "me"}},
    }

    findings = statement_findings(bad)

    assert [f.split(" on ")[0] for f in findings] == [
        "iot:ListTagsForResource",
        "iot:TagResource",
        "iot:UntagResource",
    ]
    assert all("aws:ResourceTag/owner (StringEquals) is never in the request context" in f for f in findings)


def test_checker_accepts_keys_that_apply() -> None:
    good = [
        {
            "Effect": "Allow",
            "Action": ["iot:DescribeTunnel", "iot:CloseTunnel", "iot:RotateTunnelAccessToken"],
            "Resource": TUNNELS,
            "Condition": {"StringEquals": {"AWS:RESOURCETAG/owner": "me"}},  # names are case-insensitive
        },
        {
            "Effect": "Allow",
            "Action": "iot:OpenTunnel",
            "Resource": [TUNNELS, f"arn:aws:iot:{FAKE_REGION}:{FAKE_ACCOUNT}:thing/device"],
            "Condition": {
                "StringEquals": {"aws:RequestTag/owner": "me"},
                "ForAllValues:StringEquals": {"iot:TunnelDestinationService": ["SSH"]},
            },
        },
        {
            "Effect": "Deny",
            "Action": ["iot:TagResource", "iot:UntagResource"],
            "Resource": TUNNELS,
            "Condition": {"ForAnyValue:StringLike": {"aws:TagKeys": "reserved:*"}},
        },
        {
            "Effect": "Allow",
            "Action": "iot:ListTagsForResource",
            "Resource": "*",  # any resource type, some of which have tags
            "Condition": {"Bool": {"aws:SecureTransport": "true"}},
        },
        {
            "Effect": "Allow",
            "Action": "iot:ListTagsForResource",
            "Resource": TUNNELS,
            "Condition": {"StringEqualsIfExists": {"aws:ResourceTag/owner": "me"}},
        },
        {
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": f"arn:aws:kms:{FAKE_REGION}:{FAKE_ACCOUNT}:key/*",
            "Condition": {"StringLike": {"kms:EncryptionContext:SecretARN": "arn:*"}},
        },
    ]

    assert [f for statement in good for f in statement_findings(statement)] == []


def test_checker_knows_which_tunnel_actions_carry_the_thing_group() -> None:
    thing = f"arn:aws:iot:{FAKE_REGION}:{FAKE_ACCOUNT}:thing/device-*"
    statement = {
        "Effect": "Allow",
        "Action": ["iot:OpenTunnel", "iot:RotateTunnelAccessToken", "iot:DescribeTunnel", "iot:CloseTunnel"],
        "Resource": [TUNNELS, thing],
        "Condition": {"ForAnyValue:ArnLike": {"iot:ThingGroupArn": "arn:aws:iot:*:*:thinggroup/g"}},
    }

    findings = statement_findings(statement)

    # OpenTunnel and RotateTunnelAccessToken carry it; DescribeTunnel and CloseTunnel do not.
    assert sorted(f.split(": condition")[0] for f in findings) == [
        f"iot:CloseTunnel on {thing}",
        f"iot:CloseTunnel on {TUNNELS}",
        f"iot:DescribeTunnel on {thing}",
        f"iot:DescribeTunnel on {TUNNELS}",
    ]


def test_checker_reports_unknown_and_wildcard_actions() -> None:
    statement = {"Effect": "Allow", "Action": ["iot:OpenTunel", "iot:*Tunnel"], "Resource": TUNNELS}

    findings = statement_findings(statement)

    assert findings == [
        "iot:OpenTunel: iot:OpenTunel is not in the Service Authorization Reference",
        "iot:*Tunnel: iot:*Tunnel: a wildcard names no single action",
    ]


def test_a_resource_of_another_type_brings_no_keys_of_the_tunnel() -> None:
    thing = f"arn:aws:iot:{FAKE_REGION}:{FAKE_ACCOUNT}:thing/device"
    statement = {
        "Effect": "Allow",
        "Action": "iot:DescribeTunnel",
        "Resource": [thing, f"arn:aws:iot:{FAKE_REGION}:{FAKE_ACCOUNT}:tunnel/abc:thing/x"],
        "Condition": {"StringEquals": {"aws:ResourceTag/owner": "me"}},
    }

    findings = statement_findings(statement)

    assert [f.split(": ")[0] for f in findings] == [f"iot:DescribeTunnel on {thing}"]
