/* cuda_decode_mma.cuh — the decode kernel's matrix stages on tensor cores (builds with
 * -DDK_MMA=1, measured against the F32 FMA stages in docs/PERF.md): 16-bit activations T
 * against matrices of T or FP8 (E4M3, a scale per row).
 *
 * Why: with FP8 matrices the consumer warps, not HBM, set the pace (docs/PERF.md, "Quantized
 * weights on CUDA": ~4 instructions per weight for 8 warps). Here an mma.m16n8k16 takes 8 rows
 * of a tile (its B, n = the row) against the input vector (row 0 of its A; rows 1-15 zero):
 * no F32 multiply-add and no widening to F32 per weight.
 * The tile's 128-byte windows of its rows are split among the warps (window i: warp i %
 * DK_WARPS). In a window, lane (g = lane / 4, t = lane % 4) reads 16-byte vectors t and t + 4 of
 * row g (and of row g + 8 for the gated MLP's 16 rows): a dot product does not depend on the
 * order of its k, so a lane's 4 consecutive elements are the fragment's columns 2t, 2t + 1,
 * 2t + 8, 2t + 9, and lanes t of row 0 read the same elements of the input vector for A. Rows
 * of odd g load vector t + 4 first, so that each load's quarter-warp covers all 32 banks. FP8
 * bytes become T pairs exactly: for BF16, each byte's sign and 7 other bits placed under the
 * bf16 exponent's low bits (the value times 2^-120, subnormal bytes included), then one
 * multiply by 2^120 per pair; for F16, cvt.rn.f16x2.e4m3x2. The pairs are (byte 0, byte 2) and
 * (byte 1, byte 3), so the input vector's pairs are taken alike. Columns past the chunk's end
 * are zero on both sides.
 * The warps' partial sums of a group of units meet in shared memory (dk_mma_part); the unit's
 * warp then stores its outputs as dk_matvec's epilogue does. F32 accumulation throughout. */
#ifndef LLMRT_CUDA_DECODE_MMA_CUH
#define LLMRT_CUDA_DECODE_MMA_CUH

#include "backend/cuda/cuda_decode_ring.cuh"

#ifndef DK_MMA
#define DK_MMA 0
#endif

/* whether a stack of activations T and matrices W has its matrix stages on tensor cores */
template <typename T, typename W> __host__ __device__ constexpr bool dk_mma() {
    return DK_MMA && sizeof(T) == 2 && (std::is_same<W, T>::value || std::is_same<W, w_fp8>::value);
}

/* Where the warps' sums of a group of units meet (dk_matvec_mma): two buffers of
 * [DK_WARPS][16] floats in shared memory, an mbarrier each (DK_WARPS arrivals), and the count
 * of groups done by the block (their parity picks the buffer). */
struct dk_mma_part {
    float *sums;
    uint64_t *bar;
    unsigned groups;
};
/* shared floats of it (kernel_decode's misc region), with room to align the mbarriers */
__host__ __device__ constexpr int dk_mma_part_floats() {
    return DK_MMA ? 2 * DK_WARPS * 16 + 4 + 4 : 0;
}

/* Four E4M3 bytes (byte 0 first) as two pairs of T, exactly: *p02 = (byte 0, byte 2), *p13 =
 * (byte 1, byte 3). */
template <typename T>
__device__ __forceinline__ void fp8x4_pairs(unsigned u, unsigned *p02, unsigned *p13) {
    if constexpr (std::is_same<T, __half>::value) {
        const unsigned v = __byte_perm(u, 0u, 0x3120); /* bytes 0, 2, 1, 3 */
        const __half2_raw lo =
            __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(v & 0xffffu), __NV_E4M3);
        const __half2_raw hi =
            __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(v >> 16), __NV_E4M3);
        *p02 = (unsigned)lo.x | (unsigned)lo.y << 16;
        *p13 = (unsigned)hi.x | (unsigned)hi.y << 16;
    } else {
        /* bytes 1 and 3 are the high bytes of the two halves; bytes 0 and 2 after << 8 */
        const unsigned e8 = u << 8;
        const unsigned o = (u & 0x80008000u) | ((u >> 4) & 0x07f007f0u);
        const unsigned e = (e8 & 0x80008000u) | ((e8 >> 4) & 0x07f007f0u);
        const __nv_bfloat162 k = __halves2bfloat162(__ushort_as_bfloat16(0x7b80), /* 2^120 */
                                                    __ushort_as_bfloat16(0x7b80));
        const __nv_bfloat162 pe = __hmul2(*(const __nv_bfloat162 *)&e, k);
        const __nv_bfloat162 po = __hmul2(*(const __nv_bfloat162 *)&o, k);
        *p02 = *(const unsigned *)&pe;
        *p13 = *(const unsigned *)&po;
    }
}

/* One mma.m16n8k16 with F32 accumulation whose A has one nonzero row (row 0: a0 its columns
 * 2t, 2t + 1, a2 its columns 2t + 8, 2t + 9; zero in the lanes of other rows). */
template <typename T>
__device__ __forceinline__ void dk_mma_row(float (&d)[4], unsigned a0, unsigned a2, unsigned b0,
                                           unsigned b1) {
    const unsigned z = 0u;
    if constexpr (std::is_same<T, __nv_bfloat16>::value)
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
            "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a0), "r"(z), "r"(a2), "r"(z), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
            "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a0), "r"(z), "r"(a2), "r"(z), "r"(b0), "r"(b1));
}

/* The products of one 16-byte vector of W (lane's row) with the matching input elements xw (the
 * lane's 16 bytes of T for 16-bit W; 32 bytes for FP8), accumulated into d. */
template <typename T, typename W>
__device__ __forceinline__ void dk_mma_vector(float (&d)[4], int4 w, const unsigned *xw) {
    const unsigned wu[4] = {(unsigned)w.x, (unsigned)w.y, (unsigned)w.z, (unsigned)w.w};
    if constexpr (std::is_same<W, T>::value) {
#pragma unroll
        for (int j = 0; j < 2; j++) /* elements 4j..4j+3: words 2j, 2j + 1 on both sides */
            dk_mma_row<T>(d, xw[2 * j], xw[2 * j + 1], wu[2 * j], wu[2 * j + 1]);
    } else {
#pragma unroll
        for (int j = 0; j < 4; j++) { /* elements 4j..4j+3: byte pairs (0, 2) and (1, 3) */
            unsigned b02, b13;
            fp8x4_pairs<T>(wu[j], &b02, &b13);
            const unsigned a02 = __byte_perm(xw[2 * j], xw[2 * j + 1], 0x5410);
            const unsigned a13 = __byte_perm(xw[2 * j], xw[2 * j + 1], 0x7632);
            dk_mma_row<T>(d, a02, a13, b02, b13);
        }
    }
}

#endif
