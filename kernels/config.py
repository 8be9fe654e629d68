"""Compile-time knobs of the Numba kernels. Every ``@njit`` in ``kernels/`` reads these names;
a test walks the AST and fails on a hard-coded flag."""

import os

# fastmath lets LLVM reorder float sums; results then differ from the reference in the last bits.
FASTMATH = False
# Numba's on-disk cache does not see changes in other files and freezes globals: off by default.
CACHE = os.environ.get("ZHICHAO_NUMBA_CACHE") == "1"
