"""``python -m limiter_service``: same as the ``limiter-service`` console script."""

import sys

from limiter_service.server import main

sys.exit(main())
