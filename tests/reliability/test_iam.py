"""IAM: every policy the app synthesizes, checked by the IAM policy linter parliament.

The app's `cdk synth` (shared with tests/test_app.py) writes the demo and the provider stack; each
of their IAM policies is resolved to literal JSON and analysed. The only findings allowed are the
two documented RESOURCE_MISMATCH ones, where the IAM reference and the IoT developer guide
disagree on the resources of iot:OpenTunnel and iot:RotateTunnelAccessToken (tests/test_construct.py).
"""

from __future__ import annotations

import json

from tests.cdk_helpers import Assembly, resolve, resources_of_type
from tests.reliability.ledger import LEDGER
from tests.test_construct import DOCUMENTED_PARLIAMENT_FINDINGS


def test_every_synthesized_policy_passes_the_iam_linter(cli_assembly: Assembly) -> None:
    from parliament import analyze_policy_string

    checked = 0
    for path in cli_assembly.template_paths():
        template = json.loads(path.read_text())
        for name, policy in resources_of_type(template, "AWS::IAM::Policy").items():
            with LEDGER.scenario("iam"):
                document = resolve(policy["Properties"]["PolicyDocument"], template)
                analysis = analyze_policy_string(json.dumps(document), include_community_auditors=True)
                findings = {
                    (f.issue, d.get("action", "")) for f in analysis.findings for d in (f.detail or [{}])
                }
                assert findings <= DOCUMENTED_PARLIAMENT_FINDINGS, (path.name, name, sorted(findings))
                LEDGER.rows.append(
                    ("iam", f"{path.stem}: {name}", f"{len(analysis.findings)} documented findings")
                )
                checked += 1
    assert checked == 2, "one handler policy in the demo stack and one in the provider stack"
