"""The ``tensorseal`` command installed by ``pip install tensorseal``.

It runs the same Rust code as the standalone binary (the CLI is compiled
into the extension module), so output and exit codes are identical. This
module is imported only when the command runs, never by ``import tensorseal``.
"""

from __future__ import annotations

import os
import sys


def main(argv: "list[str] | None" = None) -> int:
    """Runs ``tensorseal ARGS...`` and returns its exit code."""
    from ._tensorseal import cli_main

    args = sys.argv[1:] if argv is None else list(argv)
    # Python buffers its own stdout; the Rust side writes to file descriptor 1.
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        return cli_main(["tensorseal", *map(os.fspath, args)])
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover - via ``python -m tensorseal``
    sys.exit(main())
