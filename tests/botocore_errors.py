"""botocore errors as the handler meets them, for unit tests."""

from __future__ import annotations

from botocore.exceptions import ClientError


def client_error(code: str, status: int = 400) -> ClientError:
    """A botocore ClientError as boto3 raises it for an AWS error response."""
    body = {"Error": {"Code": code, "Message": "msg"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(body, "OpenTunnel")  # type: ignore[arg-type]
