"""Builds rlcore's one C extension (the rest of the project is in pyproject.toml).

``rlcore.buffers._step_writer`` does ReplayBuffer.add's per-step copy in one call (see the C file's header for
why). It is optional: where no C compiler is available the build skips it and rlcore runs its numpy path.
"""

import numpy
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rlcore.buffers._step_writer",
            sources=["rlcore/buffers/_step_writer.c"],
            include_dirs=[numpy.get_include()],
            optional=True,
        )
    ]
)
