/* fuzz_config.c — libFuzzer harness: any bytes as config.json and generation_config.json (see
 * README.md).
 *
 * The input is split at its NUL bytes: config.json, then generation_config.json (absent when
 * there is no NUL), then ModelOpt's hf_quant_config.json (absent when there is no second NUL;
 * read when config.json has no quantization_config, as model_config_load does). A parse that
 * fails must leave a message naming the file; a config that parses must hold what the engine
 * relies on: sizes
 * positive and consistent (H a multiple of Hkv, a known architecture), finite positive norm
 * epsilon and softmax scale (neither 0 nor subnormal in float32: 1e-60 is not 0), soft-caps 0 or
 * normal floats, EOS ids within the vocabulary, RoPE frequencies finite, a quantization
 * description that is FP8 exactly when it allows a scale shape, 4-bit ones with a group size and
 * never with FP8 or for GPT-2, its strings terminated. Seeds: the real cards' config.json and
 * generation_config.json, and FP8 and 4-bit (AWQ, GPTQ, compressed-tensors) quantization configs
 * (tests/fuzz/seeds/fuzz_config/).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *cfg = (const char *)data, *gen = NULL, *hfq = NULL;
    size_t cfg_len = size, gen_len = 0, hfq_len = 0;
    const uint8_t *nul = memchr(data, 0, size);
    if (nul) {
        cfg_len = (size_t)(nul - data);
        gen = (const char *)nul + 1;
        gen_len = size - cfg_len - 1;
        const char *nul2 = memchr(gen, 0, gen_len);
        if (nul2) {
            hfq = nul2 + 1;
            hfq_len = gen_len - (size_t)(hfq - gen);
            gen_len = (size_t)(nul2 - gen);
        }
    }
    model_config c;
    memset(&c, 0, sizeof c);
    llmrt_status st = model_config_parse(&c, cfg, cfg_len, "m/config.json", gen, gen_len,
                                         "m/generation_config.json");
    if (st != LLMRT_OK) {
        const char *msg = llmrt_last_error();
        FUZZ_ASSERT(msg && (strstr(msg, "config.json") || strstr(msg, "generation_config.json")));
        return 0;
    }
    if (hfq && !c.quant.source[0]) {
        st = model_config_parse_hf_quant(&c, hfq, hfq_len, "m/hf_quant_config.json");
        const char *msg = llmrt_last_error();
        FUZZ_ASSERT(st == LLMRT_OK || (msg && strstr(msg, "hf_quant_config.json")));
    }
    const ckpt_quant *q = &c.quant;
    FUZZ_ASSERT(q->fp8 == (q->per_channel || q->per_tensor || q->fp8_block[0] > 0));
    /* block-wise FP8: both sizes positive, the inputs a multiple of 16 (the GPU kernels' unit),
     * or none; weight_scale_inv only with blocks */
    FUZZ_ASSERT((q->fp8_block[0] == 0 && q->fp8_block[1] == 0) ||
                (q->fp8_block[0] > 0 && q->fp8_block[1] > 0 && q->fp8_block[1] % 16 == 0));
    FUZZ_ASSERT(!q->fp8_scale_inv || q->fp8_block[0] > 0);
    FUZZ_ASSERT(memchr(q->desc, 0, sizeof q->desc) && memchr(q->ignore, 0, sizeof q->ignore) &&
                memchr(q->source, 0, sizeof q->source));
    FUZZ_ASSERT(!q->fp8 || q->source[0]);
    /* a 4-bit scheme: from config.json, not FP8 too, a group size (-1: per row), not GPT-2 */
    FUZZ_ASSERT(!q->i4 || (q->source[0] && !q->fp8 && (q->i4_group == -1 || q->i4_group > 0) &&
                           !c.arch->conv1d));
    FUZZ_ASSERT(q->i4 ||
                (!q->i4_group && !q->i4_zero && !q->i4_zero_minus_one && !q->i4_act_order));
    FUZZ_ASSERT(c.arch != NULL);
    FUZZ_ASSERT(c.vocab > 0 && c.hidden > 0 && c.n_layers > 0 && c.ffn > 0 && c.max_pos > 0);
    FUZZ_ASSERT(c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0);
    FUZZ_ASSERT(c.head_dim > 0);
    FUZZ_ASSERT(isfinite(c.norm_eps) && c.norm_eps >= FLT_MIN);
    FUZZ_ASSERT(isfinite(c.attn_scale) && c.attn_scale >= FLT_MIN);
    FUZZ_ASSERT(isfinite(c.embed_scale) && isfinite(c.final_softcap) && isfinite(c.attn_softcap));
    FUZZ_ASSERT(c.final_softcap == 0 || c.final_softcap >= FLT_MIN);
    FUZZ_ASSERT(c.attn_softcap == 0 || c.attn_softcap >= FLT_MIN);
    FUZZ_ASSERT(c.sliding_window >= 0);
    float *f = malloc((size_t)(c.head_dim / 2 + 1) * sizeof *f); /* head_dim: up to hidden */
    FUZZ_ASSERT(f != NULL);
    for (int which = 0; which < 2; which++) {
        rope_inv_freq(which ? &c.rope_local : &c.rope_global, c.head_dim, f);
        for (int i = 0; i < c.head_dim / 2; i++)
            FUZZ_ASSERT(isfinite(f[i]) && f[i] >= 0);
    }
    free(f);
    FUZZ_ASSERT(c.n_eos >= 0 && c.n_eos <= MODEL_MAX_EOS);
    for (int i = 0; i < c.n_eos; i++)
        FUZZ_ASSERT(c.eos_ids[i] >= 0 && c.eos_ids[i] < c.vocab);
    FUZZ_ASSERT(c.bos_id >= -1 && c.bos_id < c.vocab);
    return 0;
}
