"""`python3 -m ha_web_agent` (or `cloudinit.agent` in this repository): the command line."""

import sys

from .cli import main

sys.exit(main())
