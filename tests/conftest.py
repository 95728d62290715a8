"""Makes berth's own collection importable as ansible_collections.berth.stack."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "collections"))
