"""``python -m ccd.cli``: the ``ccd`` command."""

import sys

from ccd.cli.main import main

sys.exit(main())
