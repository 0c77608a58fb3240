# The one place mfkit touches the OpenMP runtime. Without OpenMP at build time the
# fallbacks below make every kernel run on one thread with the same results.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define MFKIT_HAVE_OPENMP 1
    #else
    #define MFKIT_HAVE_OPENMP 0
    static inline int omp_get_thread_num(void) { return 0; }
    static inline int omp_get_max_threads(void) { return 1; }
    static inline int omp_get_num_procs(void) { return 1; }
    #endif
    """
    const int MFKIT_HAVE_OPENMP
    int omp_get_thread_num() noexcept nogil
    int omp_get_max_threads() noexcept nogil
    int omp_get_num_procs() noexcept nogil
