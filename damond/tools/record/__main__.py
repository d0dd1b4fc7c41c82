"""``python -m damond.tools.record``: the ``damond record`` command."""

import sys

from damond.tools.record import main

sys.exit(main())
