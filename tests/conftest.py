"""Test-wide setup: never reach the network (even when pytest runs without `make test`), one thread."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread per process (inherited by the apps the tests start): the tests run tiny models,
# where a second thread gains nothing, and two spinning OpenMP threads per process slow every test
# several-fold as soon as the browser tests' app servers or anything else share the two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
