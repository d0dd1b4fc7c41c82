"""``python -m damond.report``: the ``damond report`` command."""

import sys

from damond.report import main

sys.exit(main())
