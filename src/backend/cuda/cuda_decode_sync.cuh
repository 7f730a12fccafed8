/* cuda_decode_sync.cuh — the decode kernel's synchronisation: shared memory addresses,
 * mbarriers, bulk copies (TMA) and L2 prefetches (sm_90), the consumers' barrier, and the tagged
 * words through which stages hand results to other blocks without grid barriers. */
#ifndef LLMRT_CUDA_DECODE_SYNC_CUH
#define LLMRT_CUDA_DECODE_SYNC_CUH

#include "backend/cuda/cuda_decode.cuh"

/* ---- shared memory, mbarriers, bulk copies (sm_90) ---- */

__device__ __forceinline__ unsigned smem_u32(const void *p) {
    return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void mbar_init(uint64_t *b, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count)
                 : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(b)),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *b, unsigned parity) {
    asm volatile("{\n\t.reg .pred p;\n"
                 "DK_WAIT_%=:\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
                 "@!p bra DK_WAIT_%=;\n}" ::"r"(smem_u32(b)),
                 "r"(parity)
                 : "memory");
}
/* bytes (a multiple of 16) from global src to shared dst (both 16-byte aligned); completion
 * is counted on mbarrier b. The L2 policy marks the lines evict-first: weights stream through
 * L2 once and must not push out the activations and KV cache that the stages wait on. */
__device__ __forceinline__ uint64_t l2_evict_first() {
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    return pol;
}
__device__ __forceinline__ void bulk_load(void *dst, const void *src, unsigned bytes, uint64_t *b,
                                          uint64_t pol) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint "
                 "[%0], [%1], %2, [%3], %4;" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(bytes), "r"(smem_u32(b)), "l"(pol)
                 : "memory");
}

/* bytes (a multiple of 16) at global p into L2, without waiting. */
__device__ __forceinline__ void prefetch_l2(const void *p, unsigned bytes) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
}

/* The consumer warps' own barrier (the producer never joins it). */
__device__ __forceinline__ void cbar() {
    asm volatile("bar.sync 1, %0;" ::"n"(DK_WARPS * 32) : "memory");
}

/* Stage outputs that other blocks read travel as tagged words, as in NCCL's LL protocol: one
 * 64-bit store holds the value (as F32) and a tag naming the launch and the stage; a reader
 * spins on the word itself until it carries the tag it waits for. No grid barrier and no
 * memory fence stand in the way: a dependency costs one memory round trip after its last
 * writer. A word is rewritten only by a later stage, which cannot start before every reader of
 * the earlier value has produced what that stage needs (each block contributes rows to every
 * stage whose input it reads; blocks without rows in a stage do not read its input).
 * Polling costs: every poll of a word not yet written is an L2 request that the step's other
 * round trips queue behind, so a block waiting for a whole vector lets one thread poll its
 * first word before all threads load (dk_load_tagged, dk_norm). */
typedef unsigned long long u64;
__device__ __forceinline__ void st_tag(u64 *p, float v, unsigned tag) {
    u64 w = ((u64)tag << 32) | __float_as_uint(v);
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(w) : "memory");
}
__device__ __forceinline__ u64 ld_tagw(const u64 *p) {
    u64 w;
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(w) : "l"(p) : "memory");
    return w;
}
/* Tagged word p once it carries tag. */
__device__ __forceinline__ u64 spin_tagw(const u64 *p, unsigned tag) {
    u64 w = ld_tagw(p);
    while ((unsigned)(w >> 32) != tag)
        w = ld_tagw(p);
    return w;
}
/* The value of tagged word p once it carries tag; w is its first load, issued earlier. */
__device__ __forceinline__ float tag_value(const u64 *p, u64 w, unsigned tag) {
    while ((unsigned)(w >> 32) != tag)
        w = ld_tagw(p);
    return __uint_as_float((unsigned)w);
}
__device__ __forceinline__ float ld_tag(const u64 *p, unsigned tag) {
    return tag_value(p, ld_tagw(p), tag);
}

/* At the end: the last block to finish counts the launch, so the next one's tags differ. */
__device__ __forceinline__ void dk_done(unsigned *bar) {
    if (threadIdx.x == 0 && atomicAdd(bar + 1, 1u) == gridDim.x - 1) {
        atomicExch(bar + 1, 0u);
        atomicAdd(bar, 1u);
    }
}

/* The tags of a launch: (launches so far) << 12 | stage. x after o of layer l is stage 2l + 1,
 * after down 2l + 2; q/k/v, attention and activation are written once per layer (l + 1). */
struct dk_tags {
    unsigned base;
    __device__ unsigned x(int stage) const {
        return base + (unsigned)stage;
    }
    __device__ unsigned layer(int l) const {
        return base + (unsigned)l + 1u;
    }
};

/* Sum over the consumer threads; red holds DK_WARPS floats. */
__device__ __forceinline__ float consumer_sum(float v, float *red) {
    v = warp_sum(v);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
    cbar();
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < DK_WARPS; i++)
        s += red[i];
    cbar();
    return s;
}

#endif
