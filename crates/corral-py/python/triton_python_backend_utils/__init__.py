"""Triton's import name for ``corral.pb_utils``: ``import triton_python_backend_utils as pb_utils``
in a ``model.py`` gets corral's module itself (one module object, so a hook a test installs with
``set_server`` and the metric families are shared by both names)."""

import sys

from corral import pb_utils as _pb_utils

sys.modules[__name__] = _pb_utils
