# Declarations of the fused SGD sweeps of _sgd_kernel.h (argument blocks, the record and
# row-grouped sweeps dispatched over the kernel paths, the seeded record shuffle), cimported
# by _sgd.pyx.
from libc.stdint cimport int32_t, int64_t, uint64_t

cdef extern from "_sgd_kernel.h" nogil:
    ctypedef struct mfk_sgd_f32:
        float *P
        float *Q
        float *bu
        float *bi
        const float *P0
        const float *Q0
        float *Gp
        float *Gq
        float *Gbu
        float *Gbi
        float mu, lr, reg, reg_bias, prior, delta
        int k, biases, loss
        Py_ssize_t ss
    ctypedef struct mfk_sgd_f64:
        double *P
        double *Q
        double *bu
        double *bi
        const double *P0
        const double *Q0
        double *Gp
        double *Gq
        double *Gbu
        double *Gbi
        double mu, lr, reg, reg_bias, prior, delta
        int k, biases, loss
        Py_ssize_t ss
    void mfk_sgd_fill_f32(mfk_sgd_f32 *a, float *P, float *Q, float *bu, float *bi,
                          const float *P0, const float *Q0, float *Gp, float *Gq, float *Gbu,
                          float *Gbi, float mu, float lr, float reg, float reg_bias,
                          float prior, float delta, int k, int biases, int loss,
                          Py_ssize_t ss)
    void mfk_sgd_fill_f64(mfk_sgd_f64 *a, double *P, double *Q, double *bu, double *bi,
                          const double *P0, const double *Q0, double *Gp, double *Gq,
                          double *Gbu, double *Gbi, double mu, double lr, double reg,
                          double reg_bias, double prior, double delta, int k, int biases,
                          int loss, Py_ssize_t ss)
    Py_ssize_t mfk_sgd_sweep_f32(int isa, const void *recs, Py_ssize_t n, const mfk_sgd_f32 *a,
                                 double *sse)
    Py_ssize_t mfk_sgd_sweep_f64(int isa, const void *recs, Py_ssize_t n, const mfk_sgd_f64 *a,
                                 double *sse)
    void mfk_shuffle_records(void *recs, Py_ssize_t n, uint64_t seed)
    void mfk_order_users(int32_t *order, int32_t *chunks, const int32_t *users, Py_ssize_t n,
                         Py_ssize_t chunk, uint64_t *state)
    int MFK_USER_CHUNK
    uint64_t mfk_splitmix64(uint64_t *state)
    ctypedef struct mfk_rows:
        const int32_t *order
        Py_ssize_t n
        const int64_t *seg
        Py_ssize_t stride, h
        const int32_t *indices
        const float *values
        uint64_t state
        int shuffle
    Py_ssize_t mfk_sgd_rows_f32(int isa, const mfk_rows **r, const mfk_sgd_f32 *a,
                                double *sse, Py_ssize_t *bad)
    Py_ssize_t mfk_sgd_rows_f64(int isa, const mfk_rows **r, const mfk_sgd_f64 *a,
                                double *sse, Py_ssize_t *bad)
