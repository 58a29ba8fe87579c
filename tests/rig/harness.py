"""One object that runs the handler against the local stand-ins and reads what happened.

The handler's own boto3 clients talk HTTP to the IoT Secure Tunneling emulator and to a moto
server (Secrets Manager); its crhelper response goes over HTTPS to the ResponseReceiver.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from .cloudformation import LambdaContext, ResponseReceiver, event
from .tunneling_emulator import TunnelingEmulator

REGION = "us-east-1"
ACCOUNT = "123456789012"
#: The access key id of the handler's credentials (its role), and of an administrator's.
HANDLER_ACCESS_KEY, ADMIN_ACCESS_KEY = "testing", "admin"
OWNER = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/demo-stack/owner"
THING = "demo-device"
#: The fields of the JSON document a token secret holds (DESIGN.md, "Secret value").
SECRET_DOCUMENT_FIELDS = (
    "tunnelId", "tunnelArn", "clientMode", "accessToken", "region", "thingName", "services", "expiresAt",
)  # fmt: skip

Handler = Callable[[dict[str, Any], Any], Any]


class Rig:
    """The test rig: emulator + moto + CloudFormation receiver, and helpers to drive the handler."""

    def __init__(self, workdir: Path) -> None:
        self.tunnels = TunnelingEmulator(region=REGION)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.cloudformation = ResponseReceiver(workdir)
        self.secrets = None  # type: Any
        self.source_secret = ""
        self.destination_secret = ""

    def start(self) -> dict[str, str]:
        """Start every stand-in; returns the environment the handler needs to reach them."""
        self.tunnels.start()
        self.moto.start()
        self.cloudformation.start()
        host, port = self.moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        return {
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": HANDLER_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_ENDPOINT_URL_IOTSECURETUNNELING": self.tunnels.endpoint_url,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.moto_url,
            "SSL_CERT_FILE": str(self.cloudformation.ca_file),
            "TUNNEL_OWNER": OWNER,
        }

    def admin_tunnels(self) -> Any:
        """A tunneling client of the account's administrator: the handler's IAM policy, which the
        emulator enforces on the handler's access key, does not bind it."""
        return boto3.client(
            "iotsecuretunneling",
            endpoint_url=self.tunnels.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ADMIN_ACCESS_KEY,
            aws_secret_access_key="admin",
        )

    def stop(self) -> None:
        """Stop every stand-in."""
        self.cloudformation.stop()
        self.moto.stop()
        self.tunnels.stop()

    def reset(self) -> None:
        """Forget all state and create the two token secrets anew."""
        self.tunnels.reset()
        self.cloudformation.clear()
        reset = urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST")  # noqa: S310 - loopback
        urllib.request.urlopen(reset).close()  # noqa: S310 - the loopback moto server
        self.secrets = boto3.client("secretsmanager", region_name=REGION, endpoint_url=self.moto_url)
        self.source_secret = self._new_secret("tunnel/source")
        self.destination_secret = self._new_secret("tunnel/destination")

    def _new_secret(self, name: str) -> str:
        placeholder = json.dumps({"status": "pending"})
        return str(self.secrets.create_secret(Name=name, SecretString=placeholder)["ARN"])

    def properties(self, **overrides: Any) -> dict[str, Any]:
        """Valid resource properties, as CloudFormation sends them (scalars as strings)."""
        props: dict[str, Any] = {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:secure-tunnel-handler",
            "DestinationConfig": {"ThingName": THING, "Services": ["SSH"]},
            "SourceAccessTokenSecretArn": self.source_secret,
            "DestinationAccessTokenSecretArn": self.destination_secret,
        }
        props.update(overrides)
        return {k: v for k, v in props.items() if v is not None}

    def send(
        self,
        handler: Handler,
        request_type: str,
        properties: dict[str, Any],
        *,
        context: LambdaContext | None = None,
        **event_fields: Any,
    ) -> dict[str, Any]:
        """Deliver one event to ``handler``; returns the response CloudFormation received."""
        url = self.cloudformation.new_url()
        handler(event(request_type, url, properties, **event_fields), context or LambdaContext())
        response = self.cloudformation.response_for(url)
        if response["Status"] == "SUCCESS" and request_type != "Delete":
            self.check_device_notified(str(response["PhysicalResourceId"]))
        return response

    def check_device_notified(self, tunnel_id: str) -> None:
        """If the tunnel is OPEN, the last token AWS IoT published on its thing's notify topic is
        its current destination token: the device can connect (tokens are compared, not shown)."""
        state = self.tunnels.tunnel(tunnel_id)
        if state is None or state["status"] != "OPEN":
            return
        thing = state["destinationConfig"]["thingName"]
        notified = self.tunnels.last_notified_token(thing) == state["destinationAccessToken"]
        assert notified, f"the device {thing} was not sent tunnel {tunnel_id}'s current destination token"

    def tunnel(self, tunnel_id: str) -> dict[str, Any]:
        """The emulator's state of a tunnel that must exist."""
        state = self.tunnels.tunnel(tunnel_id)
        assert state is not None, f"tunnel {tunnel_id} does not exist"
        return state

    def secret(self, arn: str, stage: str = "AWSCURRENT") -> dict[str, Any]:
        """The JSON document a token secret holds at ``stage``."""
        value = self.secrets.get_secret_value(SecretId=arn, VersionStage=stage)["SecretString"]
        return dict(json.loads(value))

    def secret_versions(self, arn: str) -> dict[str, tuple[list[str], str | None]]:
        """Each version with a staging label (as AWS lists them): its sorted labels and its value
        (None for the empty version RotateSecret adds)."""
        listed = self.secrets.describe_secret(SecretId=arn)["VersionIdsToStages"]
        versions: dict[str, tuple[list[str], str | None]] = {}
        for version, stages in listed.items():
            if not stages:
                continue
            try:
                value = self.secrets.get_secret_value(SecretId=arn, VersionId=version)["SecretString"]
            except self.secrets.exceptions.ResourceNotFoundException:
                value = None
            versions[version] = (sorted(stages), value)
        return versions

    @contextmanager
    def environment(self, values: dict[str, str]) -> Iterator[None]:
        """Set environment variables for the duration of the block."""
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
