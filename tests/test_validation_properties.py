"""Property-based checks of the construct's synth-time validation (hypothesis): every argument is
either accepted or refused with a ValueError naming it, and the construct accepts exactly what
the handler accepts at deploy time, so a template that synthesizes never fails validation later."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdk_iot_secure_tunnel import validation
from secure_tunnel_handler.properties import InvalidProperties, parse_properties

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tunnel/source-AbCdEf"
NAME_CHARS = st.sampled_from("aZ09:_-")
# Names near the rules: valid characters, a few invalid ones, lengths around the limits.
NAMES = st.one_of(
    st.text(NAME_CHARS, min_size=0, max_size=130),
    st.text(st.characters(codec="utf-8"), min_size=0, max_size=8),
)
TEXT = st.text(st.characters(codec="utf-8"), min_size=0, max_size=30)


def _handler_accepts(**raw: Any) -> bool:
    props: dict[str, Any] = {
        "DestinationConfig": {"ThingName": "thing", "Services": ["SSH"]},
        "SourceAccessTokenSecretArn": SECRET,
        **raw,
    }
    try:
        parse_properties(props)
    except InvalidProperties:
        return False
    return True


def _construct_accepts(check: Any, argument: str, value: Any) -> bool:
    try:
        check(value)
    except ValueError as exc:
        assert f"SecureTunnel argument '{argument}'" in str(exc)
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(st.lists(NAMES, min_size=0, max_size=5))
def test_services_agree_with_the_handler(services: list[str]) -> None:
    accepted = _construct_accepts(validation.validate_services, "services", services)
    assert accepted == _handler_accepts(DestinationConfig={"ThingName": "thing", "Services": services})


@settings(max_examples=150, deadline=None)
@given(NAMES)
def test_thing_name_agrees_with_the_handler(name: str) -> None:
    accepted = _construct_accepts(validation.validate_thing_name, "thing", name)
    assert accepted == _handler_accepts(DestinationConfig={"ThingName": name, "Services": ["SSH"]})


@settings(max_examples=150, deadline=None)
@given(st.one_of(TEXT, st.text(min_size=2040, max_size=2060)))
def test_description_agrees_with_the_handler(description: str) -> None:
    accepted = _construct_accepts(validation.validate_description, "description", description)
    assert accepted == _handler_accepts(Description=description)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(TEXT, TEXT, max_size=4))
def test_tags_agree_with_the_handler(tags: dict[str, str]) -> None:
    accepted = _construct_accepts(validation.validate_tags, "tags", tags)
    as_template = [{"Key": k, "Value": v} for k, v in tags.items()]
    assert accepted == _handler_accepts(Tags=as_template)


@pytest.mark.parametrize("count", [196, 197])
def test_tag_count_limit_agrees_with_the_handler(count: int) -> None:
    tags = {f"k{i}": "v" for i in range(count)}
    accepted = _construct_accepts(validation.validate_tags, "tags", tags)
    assert accepted == _handler_accepts(Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    assert accepted == (count <= 196)  # the handler adds 4 of the API's 200
