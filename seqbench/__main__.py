"""``python -m seqbench``: the ``seqbench`` command."""

import sys

from .cli import main

sys.exit(main())
