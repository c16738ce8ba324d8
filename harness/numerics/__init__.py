"""Pure array code: Numba kernels behind validating wrappers, no objects, no I/O."""
