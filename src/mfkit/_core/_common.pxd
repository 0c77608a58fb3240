from libc.stdint cimport int64_t, uint64_t

cdef uint64_t splitmix64(uint64_t *state) noexcept nogil
cdef uint64_t bounded(uint64_t *state, uint64_t n) noexcept nogil
cdef void shuffle_i64(int64_t *a, Py_ssize_t n, uint64_t *state) noexcept nogil
