/* cuda_mma.cuh — tensor-core pieces of the few-row kernels (cuda_matmul.cu), kept apart so that
 * any kernel that multiplies I4 codes on tensor cores uses the same ones: one mma.m16n8k16, T
 * pairs in 32-bit words, and the product of I4 codes with an input vector (the INT4 matrices'
 * dequantization, written once).
 *
 * The I4 product: a lane 4g + t of a warp holds 16 bytes (32 codes) of each of two rows of W,
 * row g and row g + 8 of a 16-row block, at the same columns, and the 16-byte vectors of T of
 * the input at those columns. A dot product is the same sum in any order of its k, so the
 * columns are taken as the mma's k in an order of the kernel's own: word j of the lane's 16
 * bytes (columns 8j..8j+7 of its 32) gives four pairs (code s, code s + 4), s < 4, each made by
 * one LOP3 (the code under the mantissa of 2^7 for BF16 or 2^10 for F16, whose last place is 1:
 * the pair's value is 2^7 + code) and one HSUB2 that takes 2^7 + zero off (exact for integer
 * zero points 0..15). The pairs are A's registers (rows g and g + 8, k 2t/2t+1 and 2t+8/2t+9)
 * and the input's matching pairs (x[s], x[s + 4]) B's, by one PRMT each. */
#ifndef LLMRT_CUDA_MMA_CUH
#define LLMRT_CUDA_MMA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

/* One mma.m16n8k16 (F32 accumulation): d += A[16 x 16] B[16 x 8]. */
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], unsigned a0, unsigned a1, unsigned a2,
                                         unsigned a3, unsigned b0, unsigned b1) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
            "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
            "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* a - b for two T pairs held as 32-bit words (HSUB2) */
template <typename T> __device__ __forceinline__ unsigned hsub2u(unsigned a, unsigned b) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value) {
        __nv_bfloat162 r = __hsub2(*(const __nv_bfloat162 *)&a, *(const __nv_bfloat162 *)&b);
        return *(const unsigned *)&r;
    } else {
        __half2 r = __hsub2(*(const __half2 *)&a, *(const __half2 *)&b);
        return *(const unsigned *)&r;
    }
}

/* Two F32 values as the T pair of an mma register (exact for the values of FP8 and INT8 bytes). */
template <typename T> __device__ __forceinline__ unsigned pack2(float a, float b) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value) {
        __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
        return *(const unsigned *)&v;
    } else {
        __half2 v = __floats2half2_rn(a, b);
        return *(const unsigned *)&v;
    }
}

/* The pair that a group's zero point z (8 for matrices without zero points: symmetric codes)
 * makes: (base + z) twice, base 2^7 (BF16) or 2^10 (F16), which i4_mma_word subtracts from its
 * codes' pairs. */
template <typename T> __device__ __forceinline__ unsigned i4_zero_pair(float z) {
    constexpr float BASE = std::is_same<T, __nv_bfloat16>::value ? 128.0f : 1024.0f;
    return pack2<T>(BASE + z, BASE + z);
}

/* d += the products of word j's 8 codes of rows g (wa) and g + 8 (wb) with the input's 8 values
 * at their columns (xv: 8 T), as the mma's column g (see the top of this file): two mmas. ha, hb:
 * the rows' zero pairs (i4_zero_pair). */
template <typename T>
__device__ __forceinline__ void i4_mma_word(float (&d)[4], unsigned wa, unsigned wb, unsigned ha,
                                            unsigned hb, uint4 xv) {
    constexpr unsigned MAGIC =
        std::is_same<T, __nv_bfloat16>::value ? 0x43004300u : 0x64006400u; /* 2^7 or 2^10 */
    unsigned pa[4], pb[4];
#pragma unroll
    for (int s = 0; s < 4; s++) {
        pa[s] = hsub2u<T>(((wa >> (4 * s)) & 0x000F000Fu) | MAGIC, ha);
        pb[s] = hsub2u<T>(((wb >> (4 * s)) & 0x000F000Fu) | MAGIC, hb);
    }
    /* A: (row g, k 2t/2t+1) (row g+8, ...) (row g, k 2t+8/2t+9) (row g+8, ...);
     * B: (k 2t/2t+1, n g) (k 2t+8/2t+9, n g) */
    mma16816<T>(d, pa[0], pb[0], pa[1], pb[1], __byte_perm(xv.x, xv.z, 0x5410),
                __byte_perm(xv.x, xv.z, 0x7632));
    mma16816<T>(d, pa[2], pb[2], pa[3], pb[3], __byte_perm(xv.y, xv.w, 0x5410),
                __byte_perm(xv.y, xv.w, 0x7632));
}

#endif
