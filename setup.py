"""Builds the Cython kernels.

The build may fall back to the pure-Python twins (``kernels/_*_py.py``) when no compiler is
available; CI may not: it sets ``KERNELS_REQUIRE_NATIVE=1`` and a test fails if a twin was loaded.
"""

import os
import sys

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE_NATIVE = os.environ.get("KERNELS_REQUIRE_NATIVE") == "1"


def cython_extensions() -> list[Extension]:
    from Cython.Build import cythonize

    extensions = [
        Extension(
            "kernels._plates",
            ["kernels/_plates.pyx"],
            include_dirs=[np.get_include()],
            extra_compile_args=["-O3"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        ),
    ]
    return cythonize(extensions, language_level=3, annotate=False)


class OptionalBuildExt(build_ext):
    """Compile what can be compiled; fall back to the Python twins unless native is required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # the compiler toolchain is missing or broken
            if REQUIRE_NATIVE:
                raise
            print(
                f"zhichao: native kernels not built ({exc}); using pure-Python twins",
                file=sys.stderr,
            )

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE_NATIVE:
                raise
            print(
                f"zhichao: could not build {ext.name} ({exc}); using its pure-Python twin",
                file=sys.stderr,
            )


setup(ext_modules=cython_extensions(), cmdclass={"build_ext": OptionalBuildExt})
