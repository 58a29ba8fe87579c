"""Defence in depth: no access token reaches a log line, even by mistake.

The handler never logs tokens; this filter also replaces any token it has seen in this
invocation should one end up in a message, its arguments or a traceback.
"""

from __future__ import annotations

import logging
import threading

MASK = "***REDACTED***"


class TokenRedactor(logging.Filter):
    """A logging filter that masks every registered token in every record."""

    def __init__(self) -> None:
        super().__init__()
        self._tokens: set[str] = set()
        self._lock = threading.Lock()

    def remember(self, *tokens: str | None) -> None:
        """Register tokens received from AWS so that they are masked from now on (None: no token)."""
        with self._lock:
            self._tokens.update(t for t in tokens if t)

    def forget_all(self) -> None:
        """Start a new invocation with no tokens."""
        with self._lock:
            self._tokens.clear()

    def redact(self, text: str) -> str:
        """``text`` with every registered token masked."""
        with self._lock:
            tokens = list(self._tokens)
        for token in tokens:
            text = text.replace(token, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True

    def install(self, logger: logging.Logger) -> None:
        """Attach to every handler of ``logger`` (the Lambda runtime adds its own to root)."""
        for handler in logger.handlers:
            if self not in handler.filters:
                handler.addFilter(self)


#: The redactor of this process; the entry point installs it on the root logger.
REDACTOR = TokenRedactor()
