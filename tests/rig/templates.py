"""Resolving a hand-written CloudFormation template's custom resource properties with stand-in
values, the way CloudFormation would before invoking the handler (scalars become strings)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

PSEUDO_PARAMETERS = {
    "AWS::StackName": "tunnel-example",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
}


def load(path: Path) -> dict[str, Any]:
    """A YAML template with short-form intrinsics (``!Ref``) turned into their long form."""
    template = cfn_yaml.load(str(path))
    return dict(template)


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    """Each parameter's default, as CloudFormation passes it (a CommaDelimitedList is a list)."""
    values: dict[str, Any] = {}
    for name, parameter in template.get("Parameters", {}).items():
        default = str(parameter["Default"])
        values[name] = default.split(",") if parameter["Type"] == "CommaDelimitedList" else default
    return values


class Resolver:
    """Resolves the intrinsic functions the examples use; anything else fails loudly."""

    def __init__(
        self, refs: Mapping[str, Any], imports: Mapping[str, str], attributes: Mapping[str, str]
    ) -> None:
        self._refs = {**PSEUDO_PARAMETERS, **refs}
        self._imports = imports
        self._attributes = attributes

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced and every scalar a string."""
        if isinstance(value, Mapping):
            if len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref")):
                return self._intrinsic(*next(iter(value.items())))
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)

    def _intrinsic(self, name: str, argument: Any) -> Any:
        if name == "Ref":
            return self._refs[argument]
        if name == "Fn::ImportValue":
            return self._imports[self.resolve(argument)]
        if name == "Fn::GetAtt":
            resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self._attributes[f"{resource}.{attribute}"]
        if name == "Fn::Sub" and isinstance(argument, str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(self._refs[m.group(1)]), argument)
        raise NotImplementedError(f"the template resolver does not support {name}")
