"""``python -m damond.tools.report``: the ``damond report`` command."""

import sys

from damond.tools.report import main

sys.exit(main())
