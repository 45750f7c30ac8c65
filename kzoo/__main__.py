"""``python -m kzoo`` runs the command-line interface."""

import sys

from kzoo.cli import main

sys.exit(main())
