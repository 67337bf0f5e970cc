"""``python -m tensorseal ARGS...``: the same as the ``tensorseal`` command."""

import sys

from ._cli import main

sys.exit(main())
