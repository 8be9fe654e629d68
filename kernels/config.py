"""Compile-time knobs of the Numba kernels. Every ``@njit`` in ``kernels/`` reads these names;
a test walks the AST and fails on a hard-coded flag."""

import os

# fastmath lets LLVM reorder float sums; results then differ from the reference in the last bits.
FASTMATH = False
# kernels that must agree bit for bit with another implementation and take ∞ as data
# (kernels.settle against the join's align_in_order): never fastmath, whatever FASTMATH says
FASTMATH_NEVER = False
# Numba's on-disk cache does not see changes in other files and freezes globals: off by default.
CACHE = os.environ.get("ZHICHAO_NUMBA_CACHE") == "1"
