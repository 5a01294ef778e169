/* bench_read_avx2.c — streaming-read kernel for the bandwidth measurement
 * (AVX2; compiled with -mavx2, called only after the CPUID check). */
#include "bench.h"

#include <immintrin.h>

uint64_t bench_read_sum_avx2(const void *p, size_t bytes)
{
    const __m256i *v = p;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < bytes / 32; i += 8) {
        /* eight loads, four independent adds: limited by memory, not ALU */
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + i + 0));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + i + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + i + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + i + 3));
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + i + 4));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + i + 5));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + i + 6));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + i + 7));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, s);
    return out[0] + out[1] + out[2] + out[3];
}
