"""The app's own start (`app.main`, same flags) on a machine made slow: every row's loading is delayed by
SBS_TEST_LOAD_DELAY seconds, so the first visitors arrive while the rows load. For tests/test_start_up.py; run as a
script, in a process of its own (a fresh start: nothing imported yet)."""

from __future__ import annotations

import logging  # noqa: I001
import os
import sys
import time

import core  # noqa: F401  (first, as in app.py: a played kind caps the engines before torch is imported)
from harness.compare import rows

DELAY = float(os.environ["SBS_TEST_LOAD_DELAY"])


def slowed(create_backend):
    """The row factory, slowed: called as each row's loading starts (the row reads "loading" meanwhile)."""

    def create_slowly(backend_id: str):
        logging.getLogger("slow_start").info("[%s] slowed: its loading takes %.1f s more", backend_id, DELAY)
        time.sleep(DELAY)
        return create_backend(backend_id)

    return create_slowly


rows.create_backend = slowed(rows.create_backend)  # the RowSet's default factory (and what it compares with)

if __name__ == "__main__":
    import app

    app.main(sys.argv[1:])
