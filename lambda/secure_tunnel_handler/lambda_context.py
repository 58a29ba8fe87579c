"""The part of Lambda's context object that the handler uses."""

from __future__ import annotations

from typing import Protocol


class LambdaContext(Protocol):
    """Lambda's context object, as far as the handler reads it: the time left before the
    function times out (it reports to CloudFormation before then)."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""
        ...
