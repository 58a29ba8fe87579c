"""Fidelity fixes of the Secrets Manager stand-in (moto 5.2.x), active for every test of the rig.

- In Secrets Manager, PutSecretValue moves AWSCURRENT to the new version and AWSPREVIOUS to the
  version that was current. moto decides "the version that was current" from an internal
  ``default_version_id`` that UpdateSecretVersionStage does not update: after AWSCURRENT was
  moved back to an older version (how the handler undoes a write), the next PutSecretValue
  leaves AWSCURRENT on two versions and GetSecretValue(AWSCURRENT) answers the older one. The
  fault matrix found this (a rolled-back Update rewrote both secrets, one still read revoked
  tokens); :func:`current_label_follows_update_secret_version_stage` keeps moto's current
  version in step with the label, as AWS does.
- A version's value cannot be changed (PutSecretValue, ClientRequestToken: the same data again
  is ignored, other data fails). moto lets any version labelled AWSPENDING be overwritten, so
  two createSecret invocations of one rotation at the same time would both "win" the write.
  The duplicates matrix found this; :func:`versions_keep_their_value` refuses the second write
  with ResourceExistsException, as AWS does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.secretsmanager.exceptions import ResourceExistsException
from moto.secretsmanager.models import SecretsManagerBackend

CURRENT = "AWSCURRENT"
_writes = threading.Lock()


@contextmanager
def current_label_follows_update_secret_version_stage() -> Iterator[None]:
    """While active, moving AWSCURRENT also makes that version moto's current version."""
    original = SecretsManagerBackend.update_secret_version_stage

    def update_secret_version_stage(
        self: Any, secret_id: str, version_stage: str, remove_from_version_id: str, move_to_version_id: str
    ) -> tuple[str, str]:
        result: tuple[str, str] = original(
            self, secret_id, version_stage, remove_from_version_id, move_to_version_id
        )
        if version_stage == CURRENT and move_to_version_id:
            self.secrets[secret_id].set_default_version_id(move_to_version_id)
        return result

    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage  # type: ignore[method-assign]
    try:
        yield
    finally:
        SecretsManagerBackend.update_secret_version_stage = original  # type: ignore[method-assign]


@contextmanager
def versions_keep_their_value() -> Iterator[None]:
    """While active, PutSecretValue with the ClientRequestToken of a version that holds a value
    succeeds only with that same value (the empty version RotateSecret adds may be written)."""
    original = SecretsManagerBackend.put_secret_value

    # moto's response layer calls the backend with keyword arguments only.
    def put_secret_value(self: Any, **request: Any) -> str:
        token = request.get("client_request_token")
        data = (request["secret_string"], request["secret_binary"])
        with _writes:  # check and write at once, as the service does
            secret_id = request["secret_id"]
            secret = self.secrets[secret_id] if self._is_valid_identifier(secret_id) else None
            version = secret.versions.get(token) if secret is not None and token else None
            stored = (version.get("secret_string"), version.get("secret_binary")) if version else (None, None)
            if secret is not None and stored not in ((None, None), data):
                raise ResourceExistsException(
                    f"You can't use ClientRequestToken {token} because that value is already in use "
                    f"for a version of secret {secret.arn}."
                )
            result: str = original(self, **request)
            return result

    SecretsManagerBackend.put_secret_value = put_secret_value  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        SecretsManagerBackend.put_secret_value = original  # type: ignore[method-assign]
