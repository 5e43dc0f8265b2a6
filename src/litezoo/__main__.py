"""``python -m litezoo`` (and ``torchrun -m litezoo``) run the CLI."""

import sys

from litezoo.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
