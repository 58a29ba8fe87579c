"""A fidelity fix of the Secrets Manager stand-in (moto 5.2.x), for the reliability matrices.

In Secrets Manager, PutSecretValue moves AWSCURRENT to the new version and AWSPREVIOUS to the
version that was current. moto decides "the version that was current" from an internal
``default_version_id`` that UpdateSecretVersionStage does not update: after AWSCURRENT was moved
back to an older version (how the handler undoes a write), the next PutSecretValue leaves
AWSCURRENT on two versions and GetSecretValue(AWSCURRENT) answers the older one. The fault
matrix found this (a rolled-back Update rewrote both secrets, one still read revoked tokens);
the patch below keeps moto's current version in step with the label, as AWS does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.secretsmanager.models import SecretsManagerBackend

CURRENT = "AWSCURRENT"


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
