"""Which condition keys AWS puts in the request context of an action, read offline (tests only).

The data is the IAM Service Authorization Reference ("Actions, resources, and condition keys for
AWS services") as ``policy_sentry`` ships it. Per action the reference has rows: one per resource
type the action works on (its ARN format, with the condition keys of that resource type and of the
action) and, for keys that apply whatever the resource, a row whose ARN format is ``*``.

For an action on a resource, the context holds the action-level keys plus those of every resource
type whose ARN format matches the resource, and the global keys of the IAM User Guide ("AWS global
condition context keys"). ``aws:ResourceTag/*``, ``aws:RequestTag/*`` and ``aws:TagKeys`` are not
global: they are there only where the reference lists them. Key names are not case-sensitive
(IAM User Guide, "IAM JSON policy elements: Condition").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from policy_sentry.querying.actions import get_action_data

#: Global condition keys (IAM User Guide, "AWS global condition context keys"): always present or
#: present whenever the request has the property, for any action. Patterns: ``*`` is any text.
GLOBAL_CONDITION_KEYS = (
    # Properties of the principal.
    "aws:PrincipalArn",
    "aws:PrincipalAccount",
    "aws:PrincipalOrgPaths",
    "aws:PrincipalOrgID",
    "aws:PrincipalTag/*",
    "aws:PrincipalIsAWSService",
    "aws:PrincipalServiceName",
    "aws:PrincipalServiceNamesList",
    "aws:PrincipalType",
    "aws:userid",
    "aws:username",
    # Properties of the role session.
    "aws:AssumedRoot",
    "aws:FederatedProvider",
    "aws:TokenIssueTime",
    "aws:MultiFactorAuthAge",
    "aws:MultiFactorAuthPresent",
    "aws:Ec2InstanceSourceVpc",
    "aws:Ec2InstanceSourcePrivateIPv4",
    "aws:SourceIdentity",
    # Properties of the network.
    "aws:SourceIp",
    "aws:SourceVpc",
    "aws:SourceVpcArn",
    "aws:SourceVpce",
    "aws:VpcSourceIp",
    "aws:VpceAccount",
    "aws:VpceOrgID",
    "aws:VpceOrgPaths",
    # Properties of the resource.
    "aws:ResourceAccount",
    "aws:ResourceOrgID",
    "aws:ResourceOrgPaths",
    # Properties of the request.
    "aws:CalledVia",
    "aws:CalledViaFirst",
    "aws:CalledViaLast",
    "aws:ViaAWSService",
    "aws:CurrentTime",
    "aws:EpochTime",
    "aws:referer",
    "aws:RequestedRegion",
    "aws:SecureTransport",
    "aws:SourceAccount",
    "aws:SourceArn",
    "aws:SourceOrgID",
    "aws:SourceOrgPaths",
    "aws:UserAgent",
)

_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
# Wildcard tokens of ARN patterns: any text; any text without ':' (a placeholder in one of the
# five colon-separated fields before the resource); any one character.
_ANY, _FIELD, _ONE = "any", "field", "one"
_Token = tuple[str, str]


class UnknownActionError(LookupError):
    """The action is not in the Service Authorization Reference that policy_sentry ships."""


@functools.lru_cache(maxsize=4096)
def condition_keys(service: str, action: str, resource: str) -> frozenset[str]:
    """Patterns of the condition keys in the context of ``service:action`` on ``resource``.

    :param service: the service prefix, e.g. ``iot``.
    :param action: the action name without prefix, e.g. ``DescribeTunnel`` (no wildcards).
    :param resource: an ARN, which may hold ``*`` and ``?`` wildcards, or ``*``.
    :returns: key patterns as the reference writes them (``aws:ResourceTag/${TagKey}``: any
        tag key); the global keys are not included.
    :raises UnknownActionError: if the reference does not list the action.
    """
    keys: set[str] = set()
    resource_tokens = _pattern_tokens(resource)
    for arn_format, row_keys in _rows(service, action):
        if arn_format == "*" or _overlap(resource_tokens, _format_tokens(arn_format)):
            keys.update(row_keys)
    return frozenset(keys)


def key_applies(key: str, service: str, action: str, resource: str) -> bool:
    """Whether condition key ``key`` can be in the context of ``service:action`` on ``resource``
    (a key of the reference for them, or a global key)."""
    patterns = (*condition_keys(service, action, resource), *GLOBAL_CONDITION_KEYS)
    return any(_key_pattern(p).fullmatch(key) for p in patterns)


def request_context(
    service: str, action: str, resource: str, candidates: Mapping[str, list[str]]
) -> dict[str, list[str]]:
    """The request context AWS would evaluate: ``candidates`` (key -> values) without the keys
    that do not apply to the action on the resource. Keys come back lower-cased."""
    return {
        key.lower(): list(values)
        for key, values in candidates.items()
        if key_applies(key, service, action, resource)
    }


@functools.cache
def _rows(service: str, action: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if any(ch in action for ch in "*?"):
        raise UnknownActionError(f"{service}:{action}: a wildcard names no single action")
    rows = get_action_data(service, action).get(service, [])
    if not rows:
        raise UnknownActionError(f"{service}:{action} is not in the Service Authorization Reference")
    return tuple((row["resource_arn_format"], tuple(row["condition_keys"])) for row in rows)


@functools.cache
def _key_pattern(pattern: str) -> re.Pattern[str]:
    # "${TagKey}" and Secrets Manager's literal "tag-key" both stand for any tag key.
    text = _PLACEHOLDER.sub("*", pattern)
    text = re.sub(r"/tag-key$", "/*", text)
    return re.compile(".*".join(re.escape(part) for part in text.split("*")), re.IGNORECASE)


def _pattern_tokens(pattern: str) -> tuple[_Token, ...]:
    """A policy's resource pattern: ``*`` any text, ``?`` one character."""
    kinds = {"*": _ANY, "?": _ONE}
    return tuple((kinds[ch], "") if ch in kinds else ("char", ch) for ch in pattern)


@functools.cache
def _format_tokens(arn_format: str) -> tuple[_Token, ...]:
    """An ARN format of the reference: a placeholder is any text, but no ``:`` before the
    resource part (partition, region and account hold none)."""
    tokens: list[_Token] = []
    position = 0
    for match in _PLACEHOLDER.finditer(arn_format):
        tokens += [("char", ch) for ch in arn_format[position : match.start()]]
        in_fields = arn_format.count(":", 0, match.start()) < 5
        tokens.append((_FIELD if in_fields else _ANY, ""))
        position = match.end()
    tokens += [("char", ch) for ch in arn_format[position:]]
    return tuple(tokens)


def _overlap(left: tuple[_Token, ...], right: tuple[_Token, ...]) -> bool:
    """Whether some ARN matches both patterns (the intersection of two wildcard languages)."""
    end: _Token = ("end", "")
    runs = (_ANY, _FIELD)

    def absorbs(run: _Token, token: _Token) -> bool:
        # A run can take in what ``token`` matches (all of it, or a part for another run).
        return token != end and (run[0] == _ANY or token != ("char", ":"))

    @functools.cache
    def common(i: int, j: int) -> bool:
        a = left[i] if i < len(left) else end
        b = right[j] if j < len(right) else end
        if a == b == end:
            return True
        # A run either ends here or takes in the other side's next token.
        if a[0] in runs and (common(i + 1, j) or (absorbs(a, b) and common(i, j + 1))):
            return True
        if b[0] in runs and (common(i, j + 1) or (absorbs(b, a) and common(i + 1, j))):
            return True
        if end in (a, b) or a[0] in runs or b[0] in runs:
            return False
        return (a[0] == _ONE or b[0] == _ONE or a == b) and common(i + 1, j + 1)

    return common(0, 0)
