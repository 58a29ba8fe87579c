"""The IoT policy a device needs to receive its tunnel notification (the destination token).

AWS IoT publishes the destination token on ``$aws/things/<thing>/tunnels/notify``; the device
(e.g. the AWS IoT Device Client) must connect, subscribe to that topic and receive from it
(IoT developer guide, "Secure tunneling": the tunnel notification topic).
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iot as iot
from constructs import Construct


class DeviceNotifyPolicy(Construct):
    """An IoT policy that lets the thing connect as itself and receive its tunnel notifications,
    attached to the device's certificate when one is given.

    :ivar policy: the ``AWS::IoT::Policy``.
    :ivar attachment: the policy's attachment to the certificate, or None.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, thing_name: str, certificate_arn: str | None
    ) -> None:
        """Create the policy.

        :param scope: the parent construct.
        :param construct_id: the construct id.
        :param thing_name: the IoT thing (its client id when it connects).
        :param certificate_arn: ARN of the device's certificate to attach the policy to, or None.
        """
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        topic = f"$aws/things/{thing_name}/tunnels/notify"

        def arn(resource: str, name: str) -> str:
            return stack.format_arn(service="iot", resource=resource, resource_name=name)

        self.policy = iot.CfnPolicy(
            self,
            "Policy",
            policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "iot:Connect", "Resource": arn("client", thing_name)},
                    {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": arn("topicfilter", topic)},
                    {"Effect": "Allow", "Action": "iot:Receive", "Resource": arn("topic", topic)},
                ],
            },
        )
        self.attachment = (
            iot.CfnPolicyPrincipalAttachment(
                self, "CertificateAttachment", policy_name=self.policy.ref, principal=certificate_arn
            )
            if certificate_arn is not None
            else None
        )
