"""``python -m bench``: run every benchmark, print the table, write docs/benchmarks.md."""

from bench.run import main

raise SystemExit(main())
