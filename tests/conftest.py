"""Session-wide test settings."""

from __future__ import annotations

import os
import shutil

# Triton kernels run through the interpreter on machines without a GPU. The flag must be
# set before anything imports triton, so it is set here, before any test module loads.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")
