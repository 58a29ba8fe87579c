"""The resource's contract module: the token document every writer and reader shares."""

from __future__ import annotations

import dataclasses
import json

import pytest

from secure_tunnel_handler.contract import DOCUMENT_KEYS, TokenDocument
from tests.rig.harness import SECRET_DOCUMENT_FIELDS

DOCUMENT = TokenDocument(
    tunnel_id="tunnel-1",
    tunnel_arn="arn:aws:iot:us-east-1:123456789012:tunnel/tunnel-1",
    client_mode="source",
    access_token="not-a-real-token",
    region="us-east-1",
    thing_name="device",
    services=("SSH", "HTTP"),
    expires_at="2030-01-01T00:00:00Z",
)


def test_every_field_of_the_document_has_one_json_key_and_they_are_the_documented_ones() -> None:
    assert list(DOCUMENT_KEYS) == [f.name for f in dataclasses.fields(TokenDocument)]
    # The rig's list is written from docs/resource-reference.md, independently of the handler.
    assert list(DOCUMENT_KEYS.values()) == list(SECRET_DOCUMENT_FIELDS)


def test_a_document_reads_back_as_written_and_its_repr_hides_the_token() -> None:
    text = DOCUMENT.to_json()
    assert json.loads(text)["services"] == ["SSH", "HTTP"]
    assert TokenDocument.parse(text) == DOCUMENT
    assert "not-a-real-token" not in repr(DOCUMENT)


@pytest.mark.parametrize(
    "change",
    [
        {"accessToken": ""},
        {"clientMode": "ALL"},
        {"services": []},
        {"services": "SSH"},
        {"region": None},
        {"tunnelId": 7},
    ],
)
def test_an_incomplete_document_is_not_a_token_document_but_its_tunnel_id_still_reads(
    change: dict[str, object],
) -> None:
    raw = {**json.loads(DOCUMENT.to_json()), **change}
    assert TokenDocument.parse(json.dumps(raw)) is None
    expected = raw["tunnelId"] if isinstance(raw["tunnelId"], str) else None
    assert TokenDocument.tunnel_id_in(json.dumps(raw)) == expected


@pytest.mark.parametrize("text", [None, "", "not json", "[1, 2]", '"tunnelId"'])
def test_text_that_is_no_json_object_holds_no_document_and_no_tunnel(text: str | None) -> None:
    assert TokenDocument.parse(text) is None
    assert TokenDocument.tunnel_id_in(text) is None
