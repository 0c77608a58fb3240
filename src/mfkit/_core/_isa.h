/* Instruction-set paths of the mfkit kernels, chosen at run time.
 *
 * A kernel that has fast paths is compiled several times from one body, each copy with a
 * gcc/clang target attribute, and takes the path as an `int isa` argument that the Python
 * layer picks (mfkit._core.isa: the best the CPU offers, or MFKIT_ISA / set_isa):
 *
 *   MFKIT_ISA_BASELINE  0  the portable path: the build's baseline target, no FMA (the
 *                          build passes -ffp-contract=off), the same bits on every machine
 *   MFKIT_ISA_AVX2      1  x86-64-v3: AVX2 + FMA
 *   MFKIT_ISA_AVX512    2  x86-64-v4: AVX-512 F/BW/DQ/VL (+ AVX2, FMA)
 *   MFKIT_ISA_NEON      3  aarch64: Advanced SIMD (NEON) with fused multiply-add
 *
 * mfkit_cpu_vnni() says whether the avx512 path may use AVX-512 VNNI as well.
 * mfkit_cpu_isa() is the best level this CPU and OS support (libgcc's cpu indicator checks
 * that the OS saves the wider registers). On x86-64 the levels are ordered (a CPU with
 * avx512 runs avx2 too); on aarch64 the paths are baseline and neon only: NEON is part of
 * the architecture, so an aarch64 build has it without a runtime check (the number 3 is a
 * name, not a level above avx512). mfkit_isa_runs(isa) says whether a path is one this
 * build and CPU run. Off x86-64 and aarch64 gcc/clang, or with -DMFKIT_NO_DISPATCH, only
 * the baseline exists: MFKIT_HAVE_X86_PATHS and MFKIT_HAVE_NEON_PATHS are 0, code under
 * them is left out and a kernel runs its baseline body.
 */
#ifndef MFKIT_ISA_H
#define MFKIT_ISA_H

#define MFKIT_ISA_BASELINE 0
#define MFKIT_ISA_AVX2 1
#define MFKIT_ISA_AVX512 2
#define MFKIT_ISA_NEON 3

#if defined(__GNUC__) && defined(__x86_64__) && !defined(MFKIT_NO_DISPATCH)
#define MFKIT_HAVE_X86_PATHS 1
#define MFKIT_TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2,popcnt,lzcnt,f16c,movbe")))
#define MFKIT_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi,bmi2,popcnt,lzcnt,f16c,movbe")))

static int mfkit_cpu_isa(void)
{
    __builtin_cpu_init();
    int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
             && __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
    if (v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return MFKIT_ISA_AVX512;
    return v3 ? MFKIT_ISA_AVX2 : MFKIT_ISA_BASELINE;
}

/* Whether the AVX-512 path may also use AVX-512 VNNI (the int8 dot products of vpdpbusd;
 * an extra within the avx512 path, not a path of its own). */
static inline int mfkit_cpu_vnni(void)
{
    return mfkit_cpu_isa() >= MFKIT_ISA_AVX512 && __builtin_cpu_supports("avx512vnni");
}
#else
#define MFKIT_HAVE_X86_PATHS 0
#define MFKIT_TARGET_AVX2
#define MFKIT_TARGET_AVX512
static inline int mfkit_cpu_vnni(void) { return 0; }
#endif

#if defined(__GNUC__) && defined(__aarch64__) && defined(__ARM_NEON) && !defined(MFKIT_NO_DISPATCH)
#define MFKIT_HAVE_NEON_PATHS 1
/* NEON is the baseline of aarch64: the path needs no target attribute */
#define MFKIT_TARGET_NEON
static int mfkit_cpu_isa(void) { return MFKIT_ISA_NEON; }
#else
#define MFKIT_HAVE_NEON_PATHS 0
#define MFKIT_TARGET_NEON
#if !MFKIT_HAVE_X86_PATHS
static int mfkit_cpu_isa(void) { return MFKIT_ISA_BASELINE; }
#endif
#endif

/* Whether `isa` is a path this build runs on this CPU (the baseline always is). */
static int mfkit_isa_runs(int isa)
{
    int best = mfkit_cpu_isa();
    if (isa == MFKIT_ISA_BASELINE) return 1;
    if (best == MFKIT_ISA_NEON) return isa == MFKIT_ISA_NEON;
    return isa > 0 && isa <= best;
}

#endif /* MFKIT_ISA_H */
