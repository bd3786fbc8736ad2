import os
import sys
import tempfile
from pathlib import Path

import pytest

from engine.datasets import shared_data

sys.path.insert(0, str(Path(__file__).resolve().parent))

SHARED_DATA = shared_data()  # $ENGINE_DATA_DIR, else the shared/data beside the checkout

# The tiny test models gain nothing from more threads; the core's thread policy reads this
# in every process the tests start, and in this one through use_torch_threads below.
os.environ.setdefault("ENGINE_THREADS", "1")
# trees tuned by the tests go to a cache of their own, never the user's
os.environ["ENGINE_CACHE"] = tempfile.mkdtemp(prefix="engine-test-cache-")


@pytest.fixture(autouse=True, scope="session")
def _threads():
    try:
        from engine.runtime import use_torch_threads

        use_torch_threads()
    except ImportError:
        pass
