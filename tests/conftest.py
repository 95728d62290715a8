"""Makes berth's own collection importable as ansible_collections.berth.stack."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "collections"))
# The scenarios' far ends (molecule/http_receiver.py) serve these tests too.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "molecule"))
