"""``python -m bingnn ...`` (and ``torchrun ... -m bingnn ...``): the ``bingnn`` command line."""

import sys

from bingnn.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
