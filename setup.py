"""Build the Cython core.

KESTREL_DEBUG=1 builds with line tracing, writes the `cython -a` annotation next to the
source, and compiles in the allocation counters that tests use to check for leaks.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("KESTREL_DEBUG", "") not in ("", "0")

macros = [("KESTREL_DEBUG", "1" if debug else "0")]
directives = {
    "language_level": "3",
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "embedsignature": True,
}
if debug:
    macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
    directives["linetrace"] = True

core = Extension(
    "kestrel._core",
    ["kestrel/_core.pyx"],
    define_macros=macros,
    extra_compile_args=["-O0", "-g"] if debug else [],
)

setup(
    ext_modules=cythonize(
        [core],
        compiler_directives=directives,
        annotate=debug,
        # Rebuild when the .pxi fragments change, not only the .pyx.
        force=debug,
    ),
)
