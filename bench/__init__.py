"""`make bench`: end-to-end inference speed and memory of the kit at real tomogram size (see bench/run.py)."""
