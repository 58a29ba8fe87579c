"""Secret checker of the integration test: which fields the token secret's document has.

Deployed inline (``lambda.Code.from_inline``) by ``integ_secure_tunnel.py`` and invoked by its
assertions. It reads the secret's AWSCURRENT version and returns booleans and that version's id,
never a value of the document: the assertion provider logs and returns whatever it is given. It
logs nothing, and a failure is reported as an error code only (never a message).
"""

import json
import os
from typing import Any

import boto3


def expected_fields() -> list[str]:
    """The document's fields, as the test app lists them (``DOCUMENT_FIELDS``, comma-separated)."""
    return os.environ["DOCUMENT_FIELDS"].split(",")


def summarize(document: Any, version_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """Booleans about ``document`` (the secret's parsed JSON) and ``version_id``."""
    doc = document if isinstance(document, dict) else {}
    fields = {name: doc.get(name) not in (None, "", [], {}) for name in expected_fields()}
    result: dict[str, Any] = {
        "fields": fields,
        "allFieldsPresent": all(fields.values()),
        "tunnelIdMatches": doc.get("tunnelId") == event.get("expectedTunnelId"),
        "clientModeIsSource": doc.get("clientMode") == "source",
        "versionId": version_id,
    }
    if "previousVersionId" in event:
        result["rotated"] = version_id != event["previousVersionId"]
    return result


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: ``{"expectedTunnelId": ..., "previousVersionId": ...}`` (both optional)."""
    try:
        client = boto3.client("secretsmanager")
        value = client.get_secret_value(SecretId=os.environ["SECRET_ARN"], VersionStage="AWSCURRENT")
        version_id = str(value["VersionId"])
        document = json.loads(value["SecretString"])
    except Exception as exc:  # the code only: a message could quote what was read
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
        return {"error": str(code)}
    return summarize(document, version_id, event if isinstance(event, dict) else {})
