"""``python -m glmx``: the glmx command line (see :mod:`glmx.cli`)."""

import sys

from glmx.cli import main

if __name__ == "__main__":
    sys.exit(main())
