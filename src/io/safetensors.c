/* safetensors.c — parsing and validating .safetensors headers, single files and shard sets.
 *
 * A safetensors file is: u64 little-endian header length N, N bytes of JSON, then the data
 * area. The JSON object maps each tensor name to {"dtype", "shape", "data_offsets": [begin,
 * end]} (offsets relative to the data area), plus an optional "__metadata__" object of
 * strings. Everything in the header is untrusted: each field is checked before use, sizes are
 * computed with overflow checks, and byte ranges are checked against the data area and against
 * each other. Gaps between ranges are allowed (nothing reads them).
 */
#include "io/safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "io/json_util.h"

/* The reference implementation refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

/* One mapped file (or borrowed memory image); tensors' data and file fields point into it. */
typedef struct st_file {
    char *path;   /* as opened, or the name given to safetensors_open_memory */
    file_map map; /* empty for a borrowed memory image */
} st_file;

/* Owns every file, path and tensor name it refers to. After a successful open the tensors are
 * sorted by name with no duplicates, and each one's data lies inside its file's data area. */
struct st_model {
    char *source;   /* the directory or file the model was opened from */
    st_file *files; /* [n_files] */
    size_t n_files;
    st_tensor *tensors; /* [n_tensors], sorted by name once opening is done */
    size_t n_tensors, cap_tensors;
};

/* ------------------------------------------------------------------------------------------ */
/* small helpers                                                                              */

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* "[2, 3]" into buf, ending in "..." when it does not fit. */
static const char *shape_str(char *buf, size_t n, int n_dims, const int64_t *shape) {
    size_t w = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && w < n; i++)
        w += (size_t)snprintf(buf + w, n - w, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (w < n) w += (size_t)snprintf(buf + w, n - w, "]");
    if (w >= n && n > 4) memcpy(buf + n - 4, "...", 4);
    return buf;
}

/* Known safetensors dtypes that llmrt does not read. */
static const char *const unsupported_dtypes[] = {
    "F64",  "I64", "I32",     "I16",     "I8",      "U64",     "U32",     "U16", "U8",
    "BOOL", "C64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
};

static llmrt_status parse_dtype(const char *s, dtype *dt, const char *file, const char *tensor) {
    if (strcmp(s, "F32") == 0)
        *dt = DT_F32;
    else if (strcmp(s, "F16") == 0)
        *dt = DT_F16;
    else if (strcmp(s, "BF16") == 0)
        *dt = DT_BF16;
    else {
        for (size_t i = 0; i < sizeof unsupported_dtypes / sizeof *unsupported_dtypes; i++)
            if (strcmp(s, unsupported_dtypes[i]) == 0)
                return err_set(LLMRT_ERR_UNSUPPORTED,
                               "%s: tensor '%s' has dtype %s; llmrt reads F32, F16 and BF16", file,
                               tensor, s);
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%.40s'", file, tensor,
                       s);
    }
    return LLMRT_OK;
}

static llmrt_status push_tensor(st_model *m, const st_tensor *t) {
    if (m->n_tensors == m->cap_tensors) {
        size_t cap = m->cap_tensors ? 2 * m->cap_tensors : 64;
        st_tensor *p = realloc(m->tensors, cap * sizeof *p);
        if (!p) return err_set(LLMRT_ERR_NOMEM, "out of memory for %zu tensors", cap);
        m->tensors = p;
        m->cap_tensors = cap;
    }
    m->tensors[m->n_tensors++] = *t;
    return LLMRT_OK;
}

static llmrt_status add_file(st_model *m, const char *path, size_t *idx) {
    st_file *p = realloc(m->files, (m->n_files + 1) * sizeof *p);
    if (!p) return err_set(LLMRT_ERR_NOMEM, "out of memory opening %s", path);
    m->files = p;
    st_file *f = &m->files[m->n_files];
    f->map.data = NULL;
    f->map.size = 0;
    f->path = str_dup(path);
    if (!f->path) return err_set(LLMRT_ERR_NOMEM, "out of memory opening %s", path);
    *idx = m->n_files++;
    return LLMRT_OK;
}

static st_model *model_new(const char *source) {
    st_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->source = str_dup(source);
    if (!m->source) {
        free(m);
        return NULL;
    }
    return m;
}

void safetensors_free(st_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_tensors; i++)
        free((char *)m->tensors[i].name);
    for (size_t i = 0; i < m->n_files; i++) {
        file_map_close(&m->files[i].map);
        free(m->files[i].path);
    }
    free(m->tensors);
    free(m->files);
    free(m->source);
    free(m);
}

/* ------------------------------------------------------------------------------------------ */
/* one file's header                                                                          */

/* Reads a non-negative integer array element. */
static int get_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

/* Validates one header entry and fills t (name not yet set). data/size: the data area. */
static llmrt_status parse_entry(st_tensor *t, const char *name, const json_t *e,
                                const unsigned char *data, size_t size, const char *file) {
    if (!json_is_object(e))
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': entry must be an object, got %s", file,
                       name, json_type_name(e));
    const json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
                 *jo = json_object_get(e, "data_offsets");
    static const char *const keys[] = {"dtype", "shape", "data_offsets"};
    const json_t *vals[] = {jd, js, jo};
    for (int i = 0; i < 3; i++)
        if (!vals[i])
            return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': field '%s' is missing", file, name,
                           keys[i]);
    if (!json_is_string(jd))
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': field 'dtype' must be a string, got %s",
                       file, name, json_type_name(jd));
    if (!json_is_array(js))
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': field 'shape' must be an array, got %s",
                       file, name, json_type_name(js));
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor '%s': field 'data_offsets' must be an array [begin, end]", file,
                       name);

    /* shape: non-negative integers; the product of the non-zero ones stays below 2^60, so
     * that numel * dtype_size cannot overflow */
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return err_set(LLMRT_ERR_UNSUPPORTED, "%s: tensor '%s' has %zu dimensions; at most %d",
                       file, name, nd, ST_MAX_DIMS);
    t->n_dims = (int)nd;
    memset(t->shape, 0, sizeof t->shape);
    uint64_t nonzero = 1;
    int has_zero = 0;
    for (size_t i = 0; i < nd; i++) {
        uint64_t v;
        if (!get_u64(json_array_get(js, i), &v))
            return err_set(LLMRT_ERR_FORMAT,
                           "%s: tensor '%s': shape[%zu] must be a non-negative integer", file, name,
                           i);
        if (v && nonzero > ((uint64_t)1 << 60) / v)
            return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s': shape is too large (overflow)", file,
                           name);
        t->shape[i] = (int64_t)v;
        if (v)
            nonzero *= v;
        else
            has_zero = 1;
    }
    uint64_t numel = has_zero ? 0 : nonzero;

    TRY(parse_dtype(json_string_value(jd), &t->dt, file, name));

    uint64_t begin, end;
    if (!get_u64(json_array_get(jo, 0), &begin) || !get_u64(json_array_get(jo, 1), &end))
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets must be non-negative integers", file, name);
    if (begin > end)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] begin after end",
                       file, name, begin, end);
    if (end > size)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] run past the data area (%zu bytes; file truncated?)",
                       file, name, begin, end, size);
    /* numel <= 2^60 and dtype_size <= 4: this product cannot overflow */
    uint64_t want = numel * dtype_size(t->dt);
    if (want != end - begin) {
        char sb[128];
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: tensor '%s': shape %s of %s needs %" PRIu64
                       " bytes but data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64,
                       file, name, shape_str(sb, sizeof sb, t->n_dims, t->shape), dtype_name(t->dt),
                       want, begin, end, end - begin);
    }
    t->data = data + begin;
    t->nbytes = (size_t)want;
    t->file = file;
    return LLMRT_OK;
}

static llmrt_status check_metadata(const json_t *meta, const char *file) {
    if (!json_is_object(meta))
        return err_set(LLMRT_ERR_FORMAT, "%s: __metadata__ must be an object, got %s", file,
                       json_type_name(meta));
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)meta, k, v) {
        if (!json_is_string(v))
            return err_set(LLMRT_ERR_FORMAT, "%s: __metadata__ field '%s' must be a string, got %s",
                           file, k, json_type_name(v));
    }
    return LLMRT_OK;
}

static int cmp_by_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->data != y->data) return (const char *)x->data < (const char *)y->data ? -1 : 1;
    return 0;
}

/* Checks that no two non-empty tensors of one file share bytes: t[0..n) are that file's. */
static llmrt_status check_overlaps(const st_tensor *t, size_t n, const unsigned char *data,
                                   const char *file) {
    const st_tensor **v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return err_set(LLMRT_ERR_NOMEM, "%s: out of memory", file);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (t[i].nbytes) v[k++] = &t[i];
    qsort(v, k, sizeof *v, cmp_by_begin);
    llmrt_status s = LLMRT_OK;
    for (size_t i = 1; i < k; i++) {
        const unsigned char *pa = v[i - 1]->data, *pb = v[i]->data;
        if (pb < pa + v[i - 1]->nbytes) {
            size_t a0 = (size_t)(pa - data), b0 = (size_t)(pb - data);
            s = err_set(LLMRT_ERR_FORMAT,
                        "%s: tensors '%s' (bytes %zu..%zu) and '%s' (bytes %zu..%zu) overlap", file,
                        v[i - 1]->name, a0, a0 + v[i - 1]->nbytes, v[i]->name, b0,
                        b0 + v[i]->nbytes);
            break;
        }
    }
    free(v);
    return s;
}

/* Parses the image of file m->files[fi] (size bytes at base) and appends its tensors. */
static llmrt_status parse_image(st_model *m, size_t fi, const unsigned char *base, size_t size) {
    const char *file = m->files[fi].path;
    if (size < 8)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)",
                       file, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | base[i];
    if (hlen > size - 8)
        return err_set(LLMRT_ERR_FORMAT,
                       "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                       file, hlen, size);
    if (hlen > ST_MAX_HEADER)
        return err_set(LLMRT_ERR_FORMAT, "%s: header length %" PRIu64 " is above the 100 MB limit",
                       file, hlen);
    const unsigned char *data = base + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;

    char where[1100];
    snprintf(where, sizeof where, "%s: header", file);
    json_t *root;
    TRY(json_parse_object(&root, (const char *)base + 8, (size_t)hlen, where));

    size_t first = m->n_tensors;
    llmrt_status s = LLMRT_OK;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            s = check_metadata(val, file);
        } else {
            st_tensor t;
            s = parse_entry(&t, key, val, data, data_size, file);
            if (s == LLMRT_OK) {
                t.name = str_dup(key);
                s = t.name ? push_tensor(m, &t) : err_set(LLMRT_ERR_NOMEM, "out of memory");
                if (s != LLMRT_OK) free((char *)t.name);
            }
        }
        if (s != LLMRT_OK) break;
    }
    json_decref(root);
    if (s == LLMRT_OK) s = check_overlaps(m->tensors + first, m->n_tensors - first, data, file);
    return s;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Sorts by name and refuses duplicates (possible only across files). */
static llmrt_status finish(st_model *m) {
    if (m->n_tensors) qsort(m->tensors, m->n_tensors, sizeof *m->tensors, cmp_by_name);
    for (size_t i = 1; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i - 1].name, m->tensors[i].name) == 0)
            return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' appears in both %s and %s", m->source,
                           m->tensors[i].name, m->tensors[i - 1].file, m->tensors[i].file);
    return LLMRT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* opening                                                                                    */

/* Maps path and appends its tensors to m. */
static llmrt_status load_file(st_model *m, const char *path) {
    size_t fi = 0;
    TRY(add_file(m, path, &fi));
    TRY(file_map_open(&m->files[fi].map, path));
    return parse_image(m, fi, m->files[fi].map.data, m->files[fi].map.size);
}

llmrt_status safetensors_open_file(st_model **out, const char *path) {
    *out = NULL;
    st_model *m = model_new(path);
    if (!m) return err_set(LLMRT_ERR_NOMEM, "out of memory opening %s", path);
    llmrt_status s = load_file(m, path);
    if (s == LLMRT_OK) s = finish(m);
    if (s != LLMRT_OK) {
        safetensors_free(m);
        return s;
    }
    *out = m;
    return LLMRT_OK;
}

llmrt_status safetensors_open_memory(st_model **out, const void *data, size_t size,
                                     const char *name) {
    *out = NULL;
    st_model *m = model_new(name);
    if (!m) return err_set(LLMRT_ERR_NOMEM, "out of memory opening %s", name);
    size_t fi = 0;
    llmrt_status s = add_file(m, name, &fi);
    if (s == LLMRT_OK) s = parse_image(m, fi, data, size);
    if (s == LLMRT_OK) s = finish(m);
    if (s != LLMRT_OK) {
        safetensors_free(m);
        return s;
    }
    *out = m;
    return LLMRT_OK;
}

/* Opens every shard named in the index's weight_map, then checks that each listed tensor is
 * in the shard the index names. Tensors a shard holds beyond the index are kept. */
static llmrt_status load_sharded(st_model *m, const char *dir, const char *index_path) {
    json_t *root;
    TRY(json_read_file(&root, index_path));
    llmrt_status s = LLMRT_OK;
    const json_t *wm = json_object_get(root, "weight_map");
    const char *name;
    json_t *v;
    char path[4096];
    if (!wm) {
        s = err_set(LLMRT_ERR_FORMAT, "%s: field 'weight_map' is missing", index_path);
        goto done;
    }
    if (!json_is_object(wm)) {
        s = err_set(LLMRT_ERR_FORMAT, "%s: field 'weight_map' must be an object, got %s",
                    index_path, json_type_name(wm));
        goto done;
    }
    if (json_object_size(wm) == 0) {
        s = err_set(LLMRT_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto done;
    }
    /* each distinct shard once, in order of first mention */
    json_object_foreach((json_t *)wm, name, v) {
        if (!json_is_string(v)) {
            s = err_set(LLMRT_ERR_FORMAT,
                        "%s: weight_map entry for tensor '%s' must be a string, got %s", index_path,
                        name, json_type_name(v));
            goto done;
        }
        const char *shard = json_string_value(v);
        if (shard[0] == '\0' || strchr(shard, '/') || strcmp(shard, ".") == 0 ||
            strcmp(shard, "..") == 0) {
            s = err_set(LLMRT_ERR_FORMAT,
                        "%s: weight_map names shard '%s' for tensor '%s'; shards must be plain "
                        "file names in the model directory",
                        index_path, shard, name);
            goto done;
        }
        if ((s = path_join(path, sizeof path, dir, shard)) != LLMRT_OK) goto done;
        int seen = 0;
        for (size_t i = 0; i < m->n_files && !seen; i++)
            seen = strcmp(m->files[i].path, path) == 0;
        if (seen) continue;
        if ((s = load_file(m, path)) != LLMRT_OK) {
            err_wrap(s, "%s lists shard '%s' (for tensor '%s'): ", index_path, shard, name);
            goto done;
        }
    }
    if ((s = finish(m)) != LLMRT_OK) goto done;
    json_object_foreach((json_t *)wm, name, v) {
        const st_tensor *t = safetensors_find(m, name);
        if ((s = path_join(path, sizeof path, dir, json_string_value(v))) != LLMRT_OK) goto done;
        if (!t || strcmp(t->file, path) != 0) {
            s = err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' is listed in shard %s but %s%s",
                        index_path, name, json_string_value(v),
                        t ? "is found in " : "that shard lacks it", t ? t->file : "");
            goto done;
        }
    }
done:
    json_decref(root);
    return s;
}

llmrt_status safetensors_open_dir(st_model **out, const char *model_dir) {
    *out = NULL;
    char single[4096], index[4096];
    TRY(path_join(single, sizeof single, model_dir, ST_SINGLE_NAME));
    TRY(path_join(index, sizeof index, model_dir, ST_INDEX_NAME));
    if (file_exists(single)) return safetensors_open_file(out, single);
    if (!dir_exists(model_dir))
        return err_set(LLMRT_ERR_IO, "%s: model directory does not exist", model_dir);
    if (!file_exists(index))
        return err_set(LLMRT_ERR_IO, "%s: has neither %s nor %s", model_dir, ST_SINGLE_NAME,
                       ST_INDEX_NAME);
    st_model *m = model_new(model_dir);
    if (!m) return err_set(LLMRT_ERR_NOMEM, "out of memory opening %s", model_dir);
    llmrt_status s = load_sharded(m, model_dir, index);
    if (s != LLMRT_OK) {
        safetensors_free(m);
        return s;
    }
    *out = m;
    return LLMRT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* lookup                                                                                     */

const st_tensor *safetensors_find(const st_model *m, const char *name) {
    size_t lo = 0, hi = m->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, m->tensors[mid].name);
        if (c == 0) return &m->tensors[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

llmrt_status safetensors_expect(const st_model *m, const char *name, int n_dims,
                                const int64_t *shape, const st_tensor **out) {
    *out = NULL;
    const st_tensor *t = safetensors_find(m, name);
    if (!t) return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' is missing", m->source, name);
    int same = t->n_dims == n_dims;
    for (int i = 0; same && i < n_dims; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[128], got[128];
        return err_set(LLMRT_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", t->file, name,
                       shape_str(got, sizeof got, t->n_dims, t->shape),
                       shape_str(want, sizeof want, n_dims, shape));
    }
    *out = t;
    return LLMRT_OK;
}

size_t safetensors_count(const st_model *m) {
    return m->n_tensors;
}

const st_tensor *safetensors_at(const st_model *m, size_t i) {
    return i < m->n_tensors ? &m->tensors[i] : NULL;
}
