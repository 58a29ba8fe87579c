"""Synth-time validation of SecureTunnel (and SecureTunnelProviderStack) arguments: each bad
value fails with a ValueError (or a TypeError for a wrong type) whose message names the argument
and the allowed values; good values at the limits pass; unresolved tokens are left to the handler."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iot as iot
from aws_cdk import aws_kms as kms
from aws_cdk.assertions import Template

from cdk_iot_secure_tunnel import SecureTunnel
from cdk_iot_secure_tunnel.provider_stack import SecureTunnelProviderStack
from secure_tunnel_handler.contract import has_control_character


@pytest.fixture(scope="module")
def stack() -> cdk.Stack:
    """One stack for every case: a rejected SecureTunnel adds nothing to it."""
    return cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "Validation")


_counter: Iterator[int] = iter(range(1_000_000))


def tunnel(stack: cdk.Stack, **overrides: Any) -> SecureTunnel:
    arguments: dict[str, Any] = {"thing": "device-1", "services": ["SSH"], **overrides}
    return SecureTunnel(stack, f"Tunnel{next(_counter)}", **arguments)


CERTIFICATE_ID = "0123456789abcdef" * 4
CERTIFICATE_RULE = "an IoT certificate ARN, arn:<partition>:iot:<region>:<account>:cert/<64 lowercase hex"

BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    # (case id, arguments, the rule the message must state)
    ("thing-empty", {"thing": ""}, "1-128 characters of [a-zA-Z0-9:_-]"),
    ("thing-space", {"thing": "my device"}, "1-128 characters of [a-zA-Z0-9:_-]"),
    ("thing-129-chars", {"thing": "d" * 129}, "1-128 characters of [a-zA-Z0-9:_-]"),
    ("thing-slash", {"thing": "site/device"}, "1-128 characters of [a-zA-Z0-9:_-]"),
    ("services-empty", {"services": []}, "(e.g. ['SSH']); got none"),
    (
        "services-four",
        {"services": ["SSH", "RDP", "HTTP", "VNC"]},
        "(e.g. ['SSH']); got 4 given, at most 3",
    ),
    ("services-duplicate", {"services": ["SSH", "RDP", "SSH"]}, "got duplicate 'SSH'"),
    ("services-bad-char", {"services": ["SSH 22"]}, "[a-zA-Z0-9:_-]"),
    ("services-empty-name", {"services": [""]}, "1-128 characters"),
    ("services-long-name", {"services": ["S" * 129]}, "1-128 characters"),
    ("description-empty", {"description": ""}, "1-2048 characters with no control characters"),
    ("description-2049", {"description": "d" * 2049}, "1-2048 characters"),
    ("description-newline", {"description": "line one\nline two"}, "no control characters"),
    ("description-tab", {"description": "a\tb"}, "no control characters"),
    ("description-zero-width", {"description": "a\u200bb"}, "no control characters"),
    ("lifetime-zero", {"max_lifetime": cdk.Duration.minutes(0)}, "from 1 minute to 12 hours"),
    ("lifetime-59-seconds", {"max_lifetime": cdk.Duration.seconds(59)}, "from 1 minute to 12 hours"),
    ("lifetime-721-minutes", {"max_lifetime": cdk.Duration.minutes(721)}, "from 1 minute to 12 hours"),
    ("lifetime-13-hours", {"max_lifetime": cdk.Duration.hours(13)}, "from 1 minute to 12 hours"),
    ("lifetime-2-days", {"max_lifetime": cdk.Duration.days(2)}, "from 1 minute to 12 hours"),
    ("lifetime-90-seconds", {"max_lifetime": cdk.Duration.seconds(90)}, "whole minutes"),
    (
        "tags-197",
        {"tags": {f"k{i}": "v" for i in range(197)}},
        "at most 196 tags (the handler adds 4 of the API's 200)",
    ),
    ("tags-empty-key", {"tags": {"": "v"}}, "keys are 1-128"),
    ("tags-long-key", {"tags": {"k" * 129: "v"}}, "keys are 1-128"),
    ("tags-bad-key-char", {"tags": {"team#1": "v"}}, "letters, digits, spaces or _.:/=+-@"),
    ("tags-long-value", {"tags": {"team": "v" * 257}}, "values are 0-256"),
    ("tags-bad-value-char", {"tags": {"team": "a;b"}}, "values are 0-256"),
    ("tags-aws-prefix", {"tags": {"aws:team": "v"}}, "no key starting with 'aws:'"),
    ("tags-aws-prefix-upper", {"tags": {"AWS:team": "v"}}, "no key starting with 'aws:'"),
    ("tags-owner-key", {"tags": {"iot-secure-tunnel:owner": "me"}}, "'iot-secure-tunnel:'"),
    ("tags-request-id-key", {"tags": {"iot-secure-tunnel:request-id": "x"}}, "'iot-secure-tunnel:'"),
    *(
        (f"certificate-{case}", {"device_certificate_arn": arn}, CERTIFICATE_RULE)
        for case, arn in [
            ("empty", ""),
            ("id-only", CERTIFICATE_ID),
            ("16-hex", "arn:aws:iot:eu-west-1:123456789012:cert/0123456789abcdef"),
            ("63-hex", f"arn:aws:iot:eu-west-1:123456789012:cert/{CERTIFICATE_ID[:-1]}"),
            ("65-hex", f"arn:aws:iot:eu-west-1:123456789012:cert/{CERTIFICATE_ID}0"),
            ("not-hex", f"arn:aws:iot:eu-west-1:123456789012:cert/{'g' * 64}"),
            ("upper-case", f"arn:aws:iot:eu-west-1:123456789012:cert/{CERTIFICATE_ID.upper()}"),
            ("cacert", f"arn:aws:iot:eu-west-1:123456789012:cacert/{CERTIFICATE_ID}"),
            ("thing", "arn:aws:iot:eu-west-1:123456789012:thing/device-1"),
            ("acm", "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"),
            ("no-account", f"arn:aws:iot:eu-west-1::cert/{CERTIFICATE_ID}"),
            ("no-region", f"arn:aws:iot::123456789012:cert/{CERTIFICATE_ID}"),
        ]
    ),
]


WRONG_TYPES: list[tuple[str, dict[str, Any], str]] = [
    # (case id, arguments, the rule the message must state): a TypeError
    ("services-a-string", {"services": "SSH"}, "a list of 1 to 3"),
    ("services-not-strings", {"services": [22]}, "service names"),
    ("description-not-text", {"description": 42}, "1-2048 characters"),
    ("lifetime-an-int", {"max_lifetime": 60}, "a Duration"),
    ("tags-not-a-mapping", {"tags": [("team", "v")]}, "a mapping"),
    ("tags-value-not-text", {"tags": {"team": 1}}, "values are 0-256"),
    ("rotation-trigger-not-text", {"rotation_trigger": 7}, "a string"),
    ("certificate-not-text", {"device_certificate_arn": 42}, CERTIFICATE_RULE),
]


CASES = [(ValueError, *case) for case in BAD_VALUES] + [(TypeError, *case) for case in WRONG_TYPES]


@pytest.mark.parametrize(
    ("error", "arguments", "rule"), [(c[0], *c[2:]) for c in CASES], ids=[c[1] for c in CASES]
)
def test_bad_value_fails_at_synth_naming_the_argument_and_the_rule(
    stack: cdk.Stack, error: type[Exception], arguments: dict[str, Any], rule: str
) -> None:
    """A value outside the rules is a ValueError, a value of the wrong type a TypeError."""
    (argument,) = arguments
    with pytest.raises(error, match=re.escape(f"SecureTunnel argument '{argument}' must be")) as failure:
        tunnel(stack, **arguments)
    assert type(failure.value) is error
    assert rule in str(failure.value)
    assert len(stack.node.children) == 0, "a rejected SecureTunnel must add nothing to the stack"


def test_bad_thing_name_on_a_cfn_thing_fails_too(stack: cdk.Stack) -> None:
    scratch = cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "Scratch")
    thing = iot.CfnThing(scratch, "Thing", thing_name="no spaces allowed")
    with pytest.raises(ValueError, match="SecureTunnel argument 'thing' must be a thing name of 1-128"):
        tunnel(scratch, thing=thing)


def test_thing_of_a_wrong_type_fails(stack: cdk.Stack) -> None:
    with pytest.raises(
        TypeError,
        match=re.escape("SecureTunnel argument 'thing' must be an aws_iot.CfnThing or a thing name"),
    ):
        tunnel(stack, thing=42)


GOOD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("thing-128-chars", {"thing": "d" * 128}),
    ("thing-all-allowed-chars", {"thing": "Site_01:gw-7"}),
    ("three-services", {"services": ["SSH", "RDP", "HTTP_8080"]}),
    ("service-128-chars", {"services": ["s" * 128]}),
    ("services-tuple", {"services": ("SSH",)}),
    ("description-2048-unicode", {"description": "Zugang f\u00fcr Wartung \u2013 \u00fc " + "x" * 2025}),
    ("lifetime-1-minute", {"max_lifetime": cdk.Duration.minutes(1)}),
    ("lifetime-60-seconds", {"max_lifetime": cdk.Duration.seconds(60)}),
    ("lifetime-12-hours", {"max_lifetime": cdk.Duration.hours(12)}),
    ("lifetime-720-minutes", {"max_lifetime": cdk.Duration.minutes(720)}),
    ("tags-196", {"tags": {f"k{i}": "v" for i in range(196)}}),
    ("tags-limits", {"tags": {"k" * 128: "v" * 256, "empty": "", "Grüße": "a b_.:/=+-@"}}),
    ("rotation-trigger", {"rotation_trigger": "2024-06-01T00:00:00Z"}),
    ("no-destination-secret", {"create_destination_secret": False}),
    ("certificate", {"device_certificate_arn": f"arn:aws:iot:eu-west-1:123456789012:cert/{CERTIFICATE_ID}"}),
    (
        "certificate-other-partition",
        {"device_certificate_arn": f"arn:aws-us-gov:iot:us-gov-west-1:123456789012:cert/{CERTIFICATE_ID}"},
    ),
]


@pytest.mark.parametrize("arguments", [c[1] for c in GOOD_VALUES], ids=[c[0] for c in GOOD_VALUES])
def test_values_at_the_limits_are_accepted(arguments: dict[str, Any]) -> None:
    scratch = cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "Scratch")
    created = tunnel(scratch, **arguments)
    assert created.tunnel_id


def test_unresolved_tokens_are_not_validated_at_synth() -> None:
    scratch = cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "Scratch")
    text = cdk.CfnParameter(scratch, "Text", type="String").value_as_string
    number = cdk.CfnParameter(scratch, "Number", type="Number").value_as_number
    names = cdk.CfnParameter(scratch, "Names", type="CommaDelimitedList").value_as_list
    created = tunnel(
        scratch,
        thing=text,
        services=names,
        description=text,
        max_lifetime=cdk.Duration.minutes(number),
        tags={"team": text, text: "value"},
        rotation_trigger=text,
        device_certificate_arn=text,
    )
    assert created.tunnel_id


def _alias(scope: cdk.Stack, kind: str) -> kms.IAlias:
    if kind == "alias":
        return kms.Alias(scope, "Alias", alias_name="alias/tunnel-tokens", target_key=kms.Key(scope, "Key"))
    if kind == "key-add-alias":
        return kms.Key(scope, "Key").add_alias("alias/tunnel-tokens")
    return kms.Alias.from_alias_name(scope, "Imported", "alias/tunnel-tokens")


@pytest.mark.parametrize("kind", ["alias", "key-add-alias", "imported-alias"])
def test_an_alias_is_refused_as_encryption_key(stack: cdk.Stack, kind: str) -> None:
    """IAM policies on an alias ARN do not control access to its key: the handler could not use it."""
    alias = _alias(cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "Keys"), kind)
    with pytest.raises(ValueError, match=re.escape("SecureTunnel argument 'encryption_key' must be")) as bad:
        tunnel(stack, encryption_key=alias)
    assert "not an alias" in str(bad.value) and "aws_kms.Key.from_key_arn" in str(bad.value)
    assert f"got 'the alias {alias.node.path}'" in str(bad.value)
    assert len(stack.node.children) == 0, "a rejected SecureTunnel must add nothing to the stack"


def test_a_key_or_an_imported_key_is_accepted_as_encryption_key() -> None:
    scratch = cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "Scratch")
    imported = kms.Key.from_key_arn(
        scratch, "Imported", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    for key in (kms.Key(scratch, "Key"), imported):
        assert tunnel(scratch, encryption_key=key).tunnel_id


def test_a_token_lifetime_must_be_in_minutes() -> None:
    scratch = cdk.Stack(cdk.App(context={"aws:cdk:bundling-stacks": []}), "Scratch")
    hours = cdk.CfnParameter(scratch, "Hours", type="Number").value_as_number
    with pytest.raises(ValueError, match=r"SecureTunnel argument 'max_lifetime' must be given in minutes"):
        tunnel(scratch, max_lifetime=cdk.Duration.hours(hours))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", False),
        ("tab\t", True),
        ("bell\x07", True),
        ("rtl\u202e", True),
        ("unassigned\U000e0080", True),
    ],
)
def test_control_characters_are_unicode_category_c(text: str, expected: bool) -> None:
    assert has_control_character(text) is expected


# --------------------------------------------------------------------------- the provider stack

GROUP_PREFIX = "arn:aws:iot:eu-west-1:123456789012:thinggroup/"
GROUP_RULE = (
    "a non-empty list of IoT thing group ARNs, arn:<partition>:iot:<region>:<account>:thinggroup/<name>"
)

BAD_THING_GROUP_ARNS: list[tuple[str, Any]] = [
    ("empty", []),
    ("thing", ["arn:aws:iot:eu-west-1:123456789012:thing/gateway-1"]),
    ("no-name", [GROUP_PREFIX]),
    ("space", [f"{GROUP_PREFIX}field gateways"]),
    ("slash", [f"{GROUP_PREFIX}site/gateways"]),
    ("129-chars", [f"{GROUP_PREFIX}{'g' * 129}"]),
    ("no-account", ["arn:aws:iot:eu-west-1::thinggroup/gateways"]),
    ("no-region", ["arn:aws:iot::123456789012:thinggroup/gateways"]),
    ("wildcard-account", ["arn:aws:iot:eu-west-1:*:thinggroup/gateways"]),
    ("other-service", ["arn:aws:iam::123456789012:group/gateways"]),
    ("name-only", ["gateways"]),
    ("one-bad-of-two", [f"{GROUP_PREFIX}gateways", "gateways"]),
]


GROUP_CASES = [(ValueError, *case) for case in BAD_THING_GROUP_ARNS] + [
    (TypeError, "a-string", f"{GROUP_PREFIX}gateways"),
    (TypeError, "not-text", [42]),
]


@pytest.mark.parametrize(
    ("error", "thing_group_arns"), [(c[0], c[2]) for c in GROUP_CASES], ids=[c[1] for c in GROUP_CASES]
)
def test_bad_thing_group_arns_fail_at_synth_naming_the_argument(
    error: type[Exception], thing_group_arns: Any
) -> None:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    with pytest.raises(
        error, match=re.escape("SecureTunnelProviderStack argument 'thing_group_arns' must be")
    ) as bad:
        SecureTunnelProviderStack(app, "Provider", thing_group_arns=thing_group_arns)
    assert type(bad.value) is error
    assert GROUP_RULE in str(bad.value)
    assert app.node.try_find_child("Provider") is None, "a rejected provider must add nothing to the app"


GOOD_THING_GROUP_ARNS: list[tuple[str, Any]] = [
    ("one", [f"{GROUP_PREFIX}gateways"]),
    ("pattern", [f"{GROUP_PREFIX}lab-*", f"{GROUP_PREFIX}site-?"]),
    ("128-chars-and-all-allowed", (f"{GROUP_PREFIX}{'g' * 120}Site_1:-",)),
    (
        "other-partitions",
        [
            "arn:aws-cn:iot:cn-north-1:123456789012:thinggroup/g",
            "arn:aws-us-gov:iot:us-gov-west-1:123456789012:thinggroup/g",
        ],
    ),
]


@pytest.mark.parametrize(
    "thing_group_arns", [c[1] for c in GOOD_THING_GROUP_ARNS], ids=[c[0] for c in GOOD_THING_GROUP_ARNS]
)
def test_thing_group_arns_at_the_limits_are_accepted(thing_group_arns: Any) -> None:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    provider = SecureTunnelProviderStack(app, "Provider", thing_group_arns=thing_group_arns)
    assert list(thing_group_arns) == _group_condition(provider)


def test_thing_group_arn_tokens_are_not_validated_at_synth() -> None:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    scratch = cdk.Stack(app, "Scratch")
    groups = cdk.CfnParameter(scratch, "Groups", type="CommaDelimitedList").value_as_list
    one = cdk.CfnParameter(scratch, "Group", type="String").value_as_string
    for index, arns in enumerate((groups, [one, f"{GROUP_PREFIX}gateways"])):
        assert SecureTunnelProviderStack(app, f"Provider{index}", thing_group_arns=arns).handler


def _group_condition(provider: SecureTunnelProviderStack) -> Any:
    template = Template.from_stack(provider).to_json()
    (policy,) = (r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy")
    (open_tunnel,) = (
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "OpenTunnelsTaggedWithThisStack"
    )
    return open_tunnel["Condition"]["ForAnyValue:ArnLike"]["iot:ThingGroupArn"]
