/* Compiler facts every mfkit C header shares, kept in one place.
 *
 * MFKIT_TARGET_CLONES(...): gcc's target_clones on x86-64 Linux (ifunc dispatch at load
 * time over the listed instruction sets); elsewhere, or with -DMFKIT_NO_DISPATCH, nothing:
 * the function is built once for the baseline target.
 * MFKIT_INLINE: inline, forced where the compiler allows it.
 */
#ifndef MFKIT_PLATFORM_H
#define MFKIT_PLATFORM_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(MFKIT_NO_DISPATCH) && !defined(__OPTIMIZE_SIZE__)
#define MFKIT_TARGET_CLONES(...) __attribute__((target_clones(__VA_ARGS__)))
#else
#define MFKIT_TARGET_CLONES(...)
#endif

#if defined(__GNUC__)
#define MFKIT_INLINE inline __attribute__((always_inline))
#else
#define MFKIT_INLINE inline
#endif

#endif /* MFKIT_PLATFORM_H */
