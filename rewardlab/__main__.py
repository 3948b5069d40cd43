"""`python -m rewardlab ...`: the same command line as `rewardlab ...` (torchrun -m rewardlab train ... uses it)."""

import sys

from .cli import main

sys.exit(main())
