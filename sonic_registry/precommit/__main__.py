"""``python -m sonic_registry.precommit``: the same as ``sonic-registry-hook``."""

import sys

from . import main

sys.exit(main())
