/* bench_read_avx512.c — streaming-read kernel for the bandwidth measurement
 * (AVX-512; compiled with -mavx512f, called only after the CPUID check). */
#include "bench.h"

#include <immintrin.h>

uint64_t bench_read_sum_avx512(const void *p, size_t bytes)
{
    const __m512i *v = p;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < bytes / 64; i += 4) {
        a0 = _mm512_add_epi64(a0, _mm512_load_si512(v + i + 0));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512(v + i + 1));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512(v + i + 2));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512(v + i + 3));
    }
    __m512i s = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
    return (uint64_t)_mm512_reduce_add_epi64(s);
}
