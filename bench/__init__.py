"""``make bench``: performance figures of the handler and the construct, each beside its floor or peer.

Run with ``python -m bench`` (what ``make bench`` does). Not part of ``make test``: no module
here is named like a test. See docs/benchmarks.md for the figures and how they are measured.
"""
