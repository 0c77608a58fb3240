# Declarations of the dispatched vector kernels in _simd.h.
cdef extern from "_simd.h" nogil:
    float mf_dot_f32(const float *a, const float *b, int k)
    double mf_dot_f64(const double *a, const double *b, int k)
    void mf_sgd_pair_f32(float *p, float *q, int k, float e, float lr, float reg)
    void mf_sgd_pair_f64(double *p, double *q, int k, double e, double lr, double reg)
    void mf_sgd_pair_prior_f32(float *p, float *q, const float *p0, const float *q0, int k,
                               float e, float lr, float reg, float prior)
    void mf_sgd_pair_prior_f64(double *p, double *q, const double *p0, const double *q0, int k,
                               double e, double lr, double reg, double prior)
    void mf_sgd_pair_ada_f32(float *p, float *q, const float *p0, const float *q0, int k,
                             float e, float lp, float lq, float reg, float prior,
                             float *sp, float *sq)
    void mf_sgd_pair_ada_f64(double *p, double *q, const double *p0, const double *q0, int k,
                             double e, double lp, double lq, double reg, double prior,
                             double *sp, double *sq)
    void mf_ada_steps_f32(float lr, float g0, float g1, float g2, float g3, float *out)
    void mf_ada_steps_f64(double lr, double g0, double g1, double g2, double g3, double *out)
    void mf_prefetch_row(const void *p, int nbytes)
    void mf_scan_abs_max_f32(const float *a, Py_ssize_t n, double *top, unsigned char *bad)
    void mf_scan_abs_max_f64(const double *a, Py_ssize_t n, double *top, unsigned char *bad)
