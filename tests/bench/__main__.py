"""``python -m tests.bench``: run every benchmark, print the table, write docs/benchmarks.md."""

from tests.bench.run import main

raise SystemExit(main())
