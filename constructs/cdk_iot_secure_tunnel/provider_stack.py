"""The provider stack: one handler function per account and region, for plain CloudFormation.

Templates declare ``Custom::IoTSecureTunnel`` with
``ServiceToken: !ImportValue IoTSecureTunnel-ServiceToken`` and make the handler the rotation
function of their token secrets with ``RotationLambdaARN: !ImportValue IoTSecureTunnel-HandlerArn``
(see ``templates/``).

Two variants of one stack: the default deploys with ``cdk deploy`` (its handler is a CDK asset,
published to the CDK bootstrap bucket); ``standalone=True`` takes the handler zip's S3 location
as template parameters and references nothing of CDK's bootstrap, so that the AWS CLI alone (or a
StackSet) deploys it (``make dist``, ``docs/deploy-without-cdk.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import (
    Annotations,
    Aws,
    BootstraplessSynthesizer,
    CfnCondition,
    CfnOutput,
    CfnParameter,
    Fn,
    Stack,
)
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from secure_tunnel_handler.contract import MAX_NAME_LENGTH, NAME_CHARACTERS

from .handler_function import HANDLER_CONSTRUCT_ID, SecureTunnelHandler
from .validation import validate_thing_group_arns

#: Export name of the handler function's ARN.
SERVICE_TOKEN_EXPORT = "IoTSecureTunnel-ServiceToken"  # noqa: S105 - an export name, not a secret
#: Export name of the same function ARN, for ``RotationLambdaARN``.
HANDLER_ARN_EXPORT = "IoTSecureTunnel-HandlerArn"
#: Token secrets the provider may write must be named with this prefix.
SECRET_NAME_PREFIX = "iot-secure-tunnel/"  # noqa: S105 - a name prefix, not a secret
#: Logical id of the parameter that narrows the things tunnels may reach.
THING_NAME_PREFIX_PARAMETER = "ThingNamePrefix"
#: Parameters of the standalone provider: the handler zip's bucket and key, and whether the
#: bucket's name is suffixed with the stack's region (one bucket per region, for StackSets).
CODE_BUCKET_PARAMETER = "CodeBucket"
CODE_KEY_PARAMETER = "CodeKey"
CODE_BUCKET_REGION_SUFFIX_PARAMETER = "CodeBucketRegionSuffix"
#: Logical id of the condition that selects ``${CodeBucket}-${AWS::Region}``.
CODE_BUCKET_PER_REGION_CONDITION = "CodeBucketPerRegion"
#: CDK's warning that code from a bucket without an object version is not updated when the object
#: changes: the standalone provider's keys change with every release instead.
OBJECT_VERSION_WARNING = "@aws-cdk/aws-lambda:codeFromBucketObjectVersionNotSpecified"
STACK_DESCRIPTION = (
    "cdk-iot-secure-tunnel provider: the Custom::IoTSecureTunnel handler for CloudFormation templates "
    f"(exports {SERVICE_TOKEN_EXPORT} and {HANDLER_ARN_EXPORT}; token secrets must be named "
    f"{SECRET_NAME_PREFIX}...)"
)


class SecureTunnelProviderStack(Stack):
    """Deploys the ``Custom::IoTSecureTunnel`` handler once and exports its ARN.

    The handler touches only tunnels it opened itself (tag ``iot-secure-tunnel:owner`` = this
    stack's id: its policy requires the tag to close, describe or rotate a tunnel, and the handler
    checks it through ``DescribeTunnel`` before it tags or untags one, which IAM cannot limit by
    tag) and only secrets named ``iot-secure-tunnel/...``.

    What the handler may reach is a stated power: any stack of the account and region that names
    it as its ``ServiceToken`` can have it open a tunnel to any thing its policy allows. By default
    that is every thing of the account and region; narrow it with the template parameter
    ``ThingNamePrefix`` (tunnels only to things whose name starts with it) and, at synth time,
    ``thing_group_arns`` (only to things in one of those groups). Both apply to opening a tunnel
    and to a rotation that names the thing (an Update can move a tunnel to another thing).

    Secrets Manager may invoke the handler to rotate only secrets of this account named
    ``iot-secure-tunnel/...``, so a template can make the handler the rotation function of its
    token secrets: ``RotationLambdaARN: !ImportValue IoTSecureTunnel-HandlerArn``.

    Two exports of one value, the function's ARN, because they promise different things: a
    ``ServiceToken`` is whatever CloudFormation sends the custom resource's events to (it could
    one day be a provider framework or an SNS topic), while ``RotationLambdaARN`` must be a Lambda
    function that implements the rotation steps. An imported export can never change while a
    stack imports it, so a template that rotated through the service token would pin the service
    token to this function for good; ``IoTSecureTunnel-HandlerArn`` says what the rotation
    schedules depend on, and leaves ``IoTSecureTunnel-ServiceToken`` free to mean only that.

    With ``standalone=True`` the stack has no CDK asset and no bootstrap reference
    (``BootstraplessSynthesizer``: adding an asset fails the synth; no ``BootstrapVersion``
    parameter or rule; no ``AWS::CDK::Metadata``). The handler's code comes from the template
    parameters ``CodeBucket`` and ``CodeKey``; ``CodeBucketRegionSuffix=true`` reads it from
    ``${CodeBucket}-${AWS::Region}`` instead, since Lambda takes code only from a bucket in the
    function's region: one StackSet, one bucket per region.

    :ivar handler: the handler function construct.
    :ivar thing_name_prefix: the ``ThingNamePrefix`` parameter.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        thing_group_arns: Sequence[str] | None = None,
        standalone: bool = False,
        **kwargs: Any,
    ) -> None:
        """Create the provider stack.

        :param scope: the app.
        :param construct_id: the stack's construct id (and default stack name).
        :param thing_group_arns: IoT thing group ARNs,
            ``arn:<partition>:iot:<region>:<account>:thinggroup/<name>`` (the name may hold ``*``
            and ``?`` wildcards); when given, tunnels reach only things in at least one of them.
            Default: None (any thing the ``ThingNamePrefix`` parameter allows).
        :param standalone: deploy without CDK: the handler's code from the ``CodeBucket`` and
            ``CodeKey`` parameters, no bootstrap references, no CDK metadata (``make dist``).
            Default: False (a CDK asset: ``cdk deploy`` after ``cdk bootstrap``).
        :param kwargs: further ``aws_cdk.Stack`` arguments.
        :raises ValueError: ``thing_group_arns`` is empty or holds something other than such ARNs.
        """
        groups = validate_thing_group_arns(thing_group_arns)
        kwargs.setdefault("description", STACK_DESCRIPTION)
        if standalone:
            kwargs.setdefault("synthesizer", BootstraplessSynthesizer())
            kwargs.setdefault("analytics_reporting", False)
        super().__init__(scope, construct_id, **kwargs)
        self.thing_name_prefix = CfnParameter(
            self,
            THING_NAME_PREFIX_PARAMETER,
            type="String",
            default="",
            allowed_pattern=f"[{NAME_CHARACTERS}]*",
            max_length=MAX_NAME_LENGTH - 1,
            description=(
                "Tunnels may reach only IoT things whose name starts with this prefix "
                "(empty: every thing of the account and region)."
            ),
        )
        if standalone:
            self.handler = SecureTunnelHandler(self, HANDLER_CONSTRUCT_ID, code=self._code_from_parameters())
        else:
            self.handler = SecureTunnelHandler.of(self)
        self.handler.authorize_by_convention(
            secret_name_prefix=SECRET_NAME_PREFIX,
            thing_name_prefix=self.thing_name_prefix.value_as_string,
            thing_group_arns=groups,
        )
        CfnOutput(
            self,
            "ServiceToken",
            value=self.handler.service_token,
            export_name=SERVICE_TOKEN_EXPORT,
            description="ServiceToken of Custom::IoTSecureTunnel resources",
        )
        CfnOutput(
            self,
            "HandlerArn",
            value=self.handler.function.function_arn,
            export_name=HANDLER_ARN_EXPORT,
            description=(
                f"Handler function ARN: the RotationLambdaARN of token secrets named {SECRET_NAME_PREFIX}..."
            ),
        )

    def _code_from_parameters(self) -> lambda_.Code:
        """The handler zip at ``s3://<CodeBucket>[-<region>]/<CodeKey>``, from template parameters."""
        bucket = CfnParameter(
            self,
            CODE_BUCKET_PARAMETER,
            type="String",
            min_length=3,
            max_length=63,
            allowed_pattern="[a-z0-9][a-z0-9.-]*[a-z0-9]",
            description=(
                "S3 bucket holding the handler zip (dist/secure-tunnel-handler-*.zip), in the "
                "stack's region; with CodeBucketRegionSuffix=true, the name without -<region>."
            ),
        )
        key = CfnParameter(
            self,
            CODE_KEY_PARAMETER,
            type="String",
            min_length=1,
            max_length=1024,
            description=(
                "S3 key of the handler zip (a new key per release: an unchanged key updates no code)."
            ),
        )
        suffix = CfnParameter(
            self,
            CODE_BUCKET_REGION_SUFFIX_PARAMETER,
            type="String",
            default="false",
            allowed_values=["true", "false"],
            description="true: read the zip from the bucket <CodeBucket>-<region> (one bucket per region).",
        )
        per_region = CfnCondition(
            self,
            CODE_BUCKET_PER_REGION_CONDITION,
            expression=Fn.condition_equals(suffix.value_as_string, "true"),
        )
        name = Fn.condition_if(
            per_region.logical_id, Fn.join("-", [bucket.value_as_string, Aws.REGION]), bucket.value_as_string
        ).to_string()
        code_bucket = s3.Bucket.from_bucket_name(self, "CodeBucketRef", name)
        Annotations.of(code_bucket).acknowledge_warning(
            OBJECT_VERSION_WARNING,
            "Each release has its own key (the zip's name holds its content hash), so a new release "
            "changes CodeKey and CloudFormation updates the code; no object version is needed.",
        )
        return lambda_.Code.from_bucket(code_bucket, key.value_as_string)
