"""Resources and IAM policy sizes of a synthesized template, against CloudFormation's and IAM's quotas.

IAM counts a policy's characters without white space (IAM User Guide, "IAM and AWS STS quotas"):
the inline policies of a role together at most 10,240, each managed policy at most 6,144, and at
most 10 managed policies per role (20 after a quota increase). CDK moves statements that do not
fit the role's inline policy into ``OverflowPolicyN`` managed policies, but it never splits one
statement, and it estimates unresolved ARNs at a fixed size: a template can synthesize and still
fail at deploy. Sizes here are of the policies as IAM receives them, with ARNs resolved to
realistic values (``us-east-1``; a secret without a name gets ``<LogicalId>-<12 random>``, and its
ARN a further ``-<6 random>``: Secrets Manager user guide, "Create a secret with CloudFormation").
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

MAX_RESOURCES = 500
ROLE_INLINE_LIMIT = 10_240
MANAGED_POLICY_LIMIT = 6_144
MANAGED_POLICIES_PER_ROLE = 10

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK_ID = (
    f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/SecureTunnelScale/0b6e1d30-0000-11ef-9f3e-0a1b2c3d4e5f"
)
_PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackId": STACK_ID,
    "AWS::StackName": "SecureTunnelScale",
    "AWS::URLSuffix": "amazonaws.com",
}
_SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{{}}-a1B2c3D4e5F6-AbCdEf"
_ARN_FORMATS = {
    "AWS::SecretsManager::Secret": _SECRET_ARN,
    "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{{}}-a1B2c3D4e5F6:*",
    "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b6e1d30-0000-11ef-9f3e-0a1b2c3d4e5f",
    "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{{}}-a1B2c3D4e5F6",
    "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{{}}-a1B2c3D4e5F6",
}
_WHITE_SPACE = re.compile(r"\s")

Json = dict[str, Any]


def _reference(node: Json, resources: Json) -> str | None:
    """The literal value of a Ref or Fn::GetAtt, or None if ``node`` is neither."""
    if set(node) == {"Ref"}:
        name = str(node["Ref"])
    elif set(node) == {"Fn::GetAtt"}:
        name = str(node["Fn::GetAtt"][0])
    else:
        return None
    if name in _PSEUDO:
        return _PSEUDO[name]
    return _ARN_FORMATS.get(resources.get(name, {}).get("Type", ""), "{}").format(name)


def resolve(node: Any, resources: Json) -> Any:
    """``node`` with Ref, Fn::GetAtt and Fn::Join replaced by literal strings (a Ref or GetAtt of
    a resource gives its ARN, or its logical id where the type has no ARN format here)."""
    if isinstance(node, list):
        return [resolve(item, resources) for item in node]
    if not isinstance(node, dict):
        return node
    literal = _reference(node, resources)
    if literal is not None:
        return literal
    if set(node) == {"Fn::Join"}:
        separator, parts = node["Fn::Join"]
        return str(separator).join(str(resolve(part, resources)) for part in parts)
    return {key: resolve(value, resources) for key, value in node.items()}


def policy_size(document: Json, resources: Json) -> int:
    """Characters of the resolved policy document, white space not counted (as IAM counts)."""
    text = json.dumps(resolve(document, resources), separators=(",", ":"))
    return len(_WHITE_SPACE.sub("", text))


@dataclass(frozen=True)
class PolicyFit:
    """The handler role's policies against IAM's quotas."""

    inline_chars: int
    managed_chars: tuple[int, ...]

    @property
    def largest_managed(self) -> int:
        """Size of the largest managed (CDK overflow) policy, 0 if none."""
        return max(self.managed_chars, default=0)

    @property
    def fits(self) -> bool:
        """Whether IAM accepts every policy (default quota of managed policies per role)."""
        return (
            self.inline_chars <= ROLE_INLINE_LIMIT
            and self.largest_managed <= MANAGED_POLICY_LIMIT
            and len(self.managed_chars) <= MANAGED_POLICIES_PER_ROLE
        )

    def describe(self) -> str:
        """One line: each size against its quota."""
        managed = ", ".join(f"{size:,}" for size in self.managed_chars) or "none"
        return (
            f"inline {self.inline_chars:,}/{ROLE_INLINE_LIMIT:,} chars; "
            f"managed (CDK overflow) [{managed}] each /{MANAGED_POLICY_LIMIT:,}"
        )


def policy_fit(template: Json) -> PolicyFit:
    """Sizes of the IAM policies in ``template`` (one handler role per stack)."""
    resources: Json = template.get("Resources", {})
    inline = 0
    managed: list[int] = []
    for resource in resources.values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Policy":
            inline += policy_size(properties["PolicyDocument"], resources)
        elif resource["Type"] == "AWS::IAM::Role":
            inline += sum(policy_size(p["PolicyDocument"], resources) for p in properties.get("Policies", []))
        elif resource["Type"] == "AWS::IAM::ManagedPolicy":
            managed.append(policy_size(properties["PolicyDocument"], resources))
    return PolicyFit(inline, tuple(managed))


def resource_count(template: Json) -> int:
    """Every resource of the template, ``AWS::CDK::Metadata`` included (it is in the template)."""
    return len(template.get("Resources", {}))


def resource_types(template: Json) -> Counter[str]:
    """Resources by type."""
    return Counter(str(r["Type"]) for r in template.get("Resources", {}).values())
