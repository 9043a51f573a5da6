"""``python -m stepstone.cli``: the ``stepstone`` command."""

import sys

from . import main

sys.exit(main())
