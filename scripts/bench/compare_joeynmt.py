#!/usr/bin/env python
"""nmt against JoeyNMT 2.3.0: `scripts/compare.py --peer joeynmt` (kept for the commands recorded in docs).

    scripts/compare_joeynmt.py [--epochs 3] [--out runs/compare] [--json FILE]   (every flag of compare.py)
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv[1:1] = ["--peer", "joeynmt"]
    runpy.run_path(str(Path(__file__).with_name("compare.py")), run_name="__main__")
