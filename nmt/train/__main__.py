"""`python -m nmt.train` (and `accelerate launch -m nmt.train`) is `nmt-train`, not a silent no-op."""

import sys

from nmt.cli.commands import train_main

sys.exit(train_main())
