"""Reliability evidence for the handler: faults, duplicates, bad input, load and leaks (issue 6)."""
