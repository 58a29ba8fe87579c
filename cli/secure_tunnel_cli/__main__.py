"""``python -m secure_tunnel_cli``: the same as the ``secure-tunnel`` console script."""

import sys

from .commands import main

sys.exit(main())
