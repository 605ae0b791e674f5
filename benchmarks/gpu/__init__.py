"""The one-shot GPU check (``bash benchmarks/gpu/run.sh OUT_DIR [WHEEL_DIR]``); see README.md here."""
