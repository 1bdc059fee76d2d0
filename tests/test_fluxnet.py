"""Kept only for ``tests/test_catalog.py``, which imports ``hh_frame`` from here.

The FLUXNET reader tests live in ``tests/sources/fluxnet/``, their file builders in
``tests.sources.fluxnet.builders``; once test_catalog imports from there, delete this file.
"""

from tests.sources.fluxnet.builders import hh_frame  # noqa: F401
