"""motor-kit inference kernel: the attached competition's test split -> /kaggle/working/submission.csv, offline.

Attach the competition and the three datasets `make bundle` builds (`make push-kernel` does it for you):
  <prefix>-src      kitlib as a wheel, put on sys.path below
  <prefix>-wheels   what the Kaggle image lacks (ultralytics, ...), pip-installed with --no-index when missing
  <prefix>-weights  fold checkpoints, presence.json and the run's config.yaml
A complete submission is always written: an unreadable tomogram gets -1s, and any other failure is printed with its
traceback and answered by an all -1 file. Such a failure then ends the kernel with exit code 1 (the version shows
ERROR, so `make submit` refuses it), except in the scoring rerun, where the fallback file is what gets scored.
Run it locally with `make dry-run`; KIT_KAGGLE_ROOT replaces /kaggle.
"""

import glob
import os
import sys
import traceback

ROOT = os.environ.get("KIT_KAGGLE_ROOT", "/kaggle")
COMPETITION = "byu-locating-bacterial-flagellar-motors-2025"
PREFIX = "motor-kit"  # dataset slugs <prefix>-src, -wheels, -weights
BUDGET_S = os.environ.get("KIT_BUDGET_S")  # seconds for the whole run (unset: kitlib.kernel.DEFAULT_BUDGET_S, 9 h)
N_VIEWS = os.environ.get("KIT_TTA_VIEWS")  # unset: the run's config.yaml views; n: the n most useful; budget sheds
RERUN = bool(os.environ.get("KAGGLE_IS_COMPETITION_RERUN"))


def last_resort_submission():
    """kitlib itself failed to load: write -1 for every sample-submission id with the standard library alone."""
    import csv

    for folder in (f"{ROOT}/input/competitions/{COMPETITION}", f"{ROOT}/input/{COMPETITION}"):
        if os.path.isfile(f"{folder}/sample_submission.csv"):
            with open(f"{folder}/sample_submission.csv", newline="") as f:
                ids = list(dict.fromkeys(row["tomo_id"] for row in csv.DictReader(f)))
            os.makedirs(f"{ROOT}/working", exist_ok=True)
            with open(f"{ROOT}/working/submission.csv", "w", newline="") as f:
                csv.writer(f).writerows([["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"]]
                                        + [[i, -1, -1, -1] for i in ids])
            print(f"wrote the fallback {ROOT}/working/submission.csv: {len(ids)} rows of -1", file=sys.stderr)
            return
    print(f"no sample_submission.csv under {ROOT}/input: nothing can be written", file=sys.stderr)


try:  # 1. kitlib from the src dataset (either mount layout), then the missing wheels
    wheels = glob.glob(f"{ROOT}/input/datasets/*/{PREFIX}-src/kitlib-*.whl")
    wheels += glob.glob(f"{ROOT}/input/{PREFIX}-src/kitlib-*.whl")
    if not wheels:
        raise FileNotFoundError(f"{ROOT}/input: no {PREFIX}-src dataset with a kitlib-*.whl attached")
    wheel = sorted(wheels)[0]
    sys.path.insert(0, wheel)
    from kitlib import kernel

    print(f"kitlib from {wheel}", flush=True)
    kernel.install_wheels(PREFIX)
except Exception:
    traceback.print_exc()
    print(f"ERROR: cannot set up kitlib from the {PREFIX}-src / {PREFIX}-wheels datasets", file=sys.stderr)
    last_resort_submission()
    sys.exit(0 if RERUN else 1)

# 2. predict the test split within the budget; this always writes working/submission.csv
report = kernel.run_infer(budget_s=BUDGET_S, n_views=N_VIEWS, prefix=PREFIX, progress=not RERUN)
sys.exit(0 if report.status == "ok" or RERUN else 1)
