"""Regenerates the committed figures under docs/images/ with graddesc's own code.

    python docs/make_images.py

- sgd_vs_gd.png: `python -m graddesc demo sgd-vs-gd` (the lecture's GD / minibatch SGD / SGD
  trajectories over a two-parameter loss), shown in README.md and on the site's front page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    os.makedirs(os.path.join(HERE, "images"), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "graddesc", "demo", "sgd-vs-gd", "--out", tmp],
                       check=True, stdout=subprocess.DEVNULL)
        shutil.copyfile(os.path.join(tmp, "sgd_vs_gd.png"),
                        os.path.join(HERE, "images", "sgd_vs_gd.png"))
    print("wrote docs/images/sgd_vs_gd.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
