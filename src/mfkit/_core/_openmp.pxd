# Whether the kernels were compiled with OpenMP (the meson openmp option). Without it,
# Cython's prange runs serially, so every kernel runs on one thread with the same results.
cdef extern from *:
    """
    #ifdef _OPENMP
    #define MFKIT_HAVE_OPENMP 1
    #else
    #define MFKIT_HAVE_OPENMP 0
    #endif
    """
    const int MFKIT_HAVE_OPENMP
