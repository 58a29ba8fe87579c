"""The rig's fixes of moto (moto_fidelity.py) behave as Secrets Manager documents."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from tests.reliability.world import World


def test_a_version_keeps_its_value(world: World) -> None:
    secrets, arn, version = world.rig.secrets, world.rig.source_secret, str(uuid.uuid4())
    secrets.put_secret_value(SecretId=arn, SecretString="first", ClientRequestToken=version)

    # The same data again is ignored (a retry); other data fails: a version cannot be changed.
    secrets.put_secret_value(SecretId=arn, SecretString="first", ClientRequestToken=version)
    with pytest.raises(ClientError, match="ResourceExistsException"):
        secrets.put_secret_value(SecretId=arn, SecretString="second", ClientRequestToken=version)
    assert secrets.get_secret_value(SecretId=arn, VersionId=version)["SecretString"] == "first"


def test_the_empty_version_of_a_rotation_is_written_once(world: World) -> None:
    secrets, arn = world.rig.secrets, world.rig.source_secret
    world.attach_rotation()
    world.rotation.run_steps = False
    version = secrets.rotate_secret(SecretId=arn)["VersionId"]

    secrets.put_secret_value(
        SecretId=arn, SecretString="new", ClientRequestToken=version, VersionStages=["AWSPENDING"]
    )
    with pytest.raises(ClientError, match="ResourceExistsException"):
        secrets.put_secret_value(
            SecretId=arn, SecretString="other", ClientRequestToken=version, VersionStages=["AWSPENDING"]
        )
    pending = secrets.get_secret_value(SecretId=arn, VersionStage="AWSPENDING")
    assert (pending["VersionId"], pending["SecretString"]) == (version, "new")


def test_a_put_after_awscurrent_was_moved_back_leaves_one_current_version(world: World) -> None:
    secrets, arn = world.rig.secrets, world.rig.source_secret
    old = secrets.describe_secret(SecretId=arn)["VersionIdsToStages"]
    (old_version,) = [v for v, stages in old.items() if "AWSCURRENT" in stages]
    new_version = secrets.put_secret_value(SecretId=arn, SecretString="new")["VersionId"]
    secrets.update_secret_version_stage(
        SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=old_version, RemoveFromVersionId=new_version
    )

    newest = secrets.put_secret_value(SecretId=arn, SecretString="newest")["VersionId"]
    labels = secrets.describe_secret(SecretId=arn)["VersionIdsToStages"]
    assert [v for v, stages in labels.items() if "AWSCURRENT" in stages] == [newest]
    assert secrets.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"] == "newest"
