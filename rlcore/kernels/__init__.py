"""Hand-written fast paths, kept apart from the readable references they reproduce.

Each module here states in its docstring which reference (an autograd loss, a torch module, a numpy
function) it reproduces, and a test checks it against that reference. Algorithms never call a kernel
directly: one explicit check decides whether a kernel covers the case at hand (device, network shape, the
stock loss and network rather than a user's subclass) and falls back to the reference otherwise.
"""
