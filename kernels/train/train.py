"""motor-kit training kernel: train one fold on the attached competition's train split, offline.

Attach the competition and the `<prefix>-src` / `<prefix>-wheels` datasets (`make push-kernel KERNEL=train` attaches
all three). Writes /kaggle/working/fold<FOLD>.pt and config.yaml; collect them with `make kernel-output
KERNEL=train`, tune the presence rule locally, then `make bundle` the weights dataset from them.
"""

import glob
import os
import sys

ROOT = os.environ.get("KIT_KAGGLE_ROOT", "/kaggle")
PREFIX = "motor-kit"
FOLD = int(os.environ.get("KIT_FOLD", 0))  # the held-out fold (0 .. n_folds-1 of the preset)
PRESET = os.environ.get("KIT_PRESET", "default")  # kitlib.config.KitConfig presets: default (GPU) / cpu
EPOCHS = int(os.environ.get("KIT_EPOCHS", 0)) or None  # None: the preset's (epochs or a time budget)

# kitlib from the src dataset (either mount layout), then the wheels the image lacks
wheels = glob.glob(f"{ROOT}/input/datasets/*/{PREFIX}-src/kitlib-*.whl")
wheels += glob.glob(f"{ROOT}/input/{PREFIX}-src/kitlib-*.whl")
if not wheels:
    sys.exit(f"{ROOT}/input: no {PREFIX}-src dataset with a kitlib-*.whl attached")
wheel = sorted(wheels)[0]
sys.path.insert(0, wheel)
from kitlib import kernel  # noqa: E402

print(f"kitlib from {wheel}", flush=True)
kernel.install_wheels(PREFIX)
kernel.run_train(FOLD, preset=PRESET, epochs=EPOCHS)
