from libc.stdint cimport uint64_t

cdef uint64_t splitmix64(uint64_t *state) noexcept nogil
cdef uint64_t bounded(uint64_t *state, uint64_t n) noexcept nogil
