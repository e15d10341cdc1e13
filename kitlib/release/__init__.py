"""Release tooling: the three Kaggle dataset bundles, kernel metadata from templates, and `make dry-run`."""
