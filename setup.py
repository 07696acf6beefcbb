"""Builds rlcore's one C extension (the rest of the project is in pyproject.toml).

``rlcore.kernels._step_writer`` does a replay shard's per-step copy in one call (see the C file's header for
why, and which numpy path it reproduces). It is optional: where no C compiler is available the build skips it
and rlcore runs that numpy path.
"""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rlcore.kernels._step_writer",
            sources=["rlcore/kernels/_step_writer.c"],
            include_dirs=[numpy.get_include()],
            optional=True,
        )
    ]
)
