/* safetensors.h — reading a model's weights from single or sharded .safetensors files. */
#ifndef LLMRT_IO_SAFETENSORS_H
#define LLMRT_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/status.h"

enum { ST_MAX_DIMS = 8 };

/* One tensor of an opened model. Everything it points to is owned by the st_model and lives
 * until safetensors_free(). data is (file start + 8 + header length + data_offsets[0]): it is
 * NOT aligned to anything (safetensors makes no promise), so consumers copy or convert it.
 * nbytes == product(shape) * dtype_size(dt), and is 0 (data may then point anywhere in the
 * data area) for tensors with a 0 dimension. A scalar has n_dims == 0 and one element.
 *
 * Reading through `data` touches the file mapping: if the file is truncated while the model is
 * open that read raises SIGBUS. Loaders read with safetensors_read / safetensors_read_as
 * instead, which fail with "file shrank while loading: <path>". */
typedef struct st_tensor {
    const char *name;           /* "model.layers.0.self_attn.q_proj.weight" */
    dtype dt;                   /* F32, F16, BF16, F8_E4M3, I32 or I64: other dtypes are refused at
                                   open */
    int n_dims;                 /* 0 .. ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS]; /* [n_dims], row-major, each >= 0; unused entries are 0 */
    const void *data;           /* [nbytes], read-only (a private file mapping) */
    size_t nbytes;              /* bytes of data */
    const char *file;           /* path of the file holding it, for messages */
    size_t file_index;          /* which of the model's files holds it (for safetensors_read) */
    uint64_t file_offset;       /* where its bytes start in that file */
} st_tensor;

/* An opened model: every tensor of one or more files, sorted by name. The files stay mapped
 * until safetensors_free(). No two tensors share a name; within a file no two tensors' byte
 * ranges overlap, and every range lies inside the file's data area. */
typedef struct st_model st_model;

/* Opens model_dir/model.safetensors if anything is there (a directory or FIFO in its place is an
 * error, not a reason to look further), else the shards listed by
 * model_dir/model.safetensors.index.json ("weight_map": tensor name -> shard file name). */
llmrt_status safetensors_open_dir(st_model **out, const char *model_dir);

/* Opens one .safetensors file. */
llmrt_status safetensors_open_file(st_model **out, const char *path);

/* Reads a safetensors image already in memory (size bytes at data). The buffer is borrowed:
 * it must outlive the model. `name` stands for the file in messages and st_tensor.file. */
llmrt_status safetensors_open_memory(st_model **out, const void *data, size_t size,
                                     const char *name);

/* The tensor called name, or NULL. O(log n). */
const st_tensor *safetensors_find(const st_model *m, const char *name);

/* Finds name and checks its rank and shape; fails with LLMRT_ERR_FORMAT naming the tensor and
 * both shapes ("expected [4096, 4096], got [4096, 1024]"), or the model file if it is absent. */
llmrt_status safetensors_expect(const st_model *m, const char *name, int n_dims,
                                const int64_t *shape, const st_tensor **out);

/* Copies bytes [offset, offset + n) of t into dst, with pread from the file (not through the
 * mapping). Fails with LLMRT_ERR_IO "reading tensor '<name>': file shrank while loading: <path>
 * ..." when the file was truncated after it was opened; a range outside t is LLMRT_ERR_INVALID. */
llmrt_status safetensors_read(const st_model *m, const st_tensor *t, size_t offset, void *dst,
                              size_t n);

/* Reads all of t into dst converted to dtype dt (dtype_convert over safetensors_read, through a
 * small bounce buffer; a plain read when dt == t->dt). With transpose, t must be 2-D [rows, cols]
 * and dst receives [cols, rows]. dst holds numel * dtype_size(dt) bytes and needs no alignment.
 * An F8_E4M3 tensor is only read as stored (dt F8_E4M3, no transpose): its values mean something
 * only with its scale, which the caller applies; so is an I32 or I64 one (packed codes, indices,
 * shapes); anything else is LLMRT_ERR_INVALID. */
llmrt_status safetensors_read_as(const st_model *m, const st_tensor *t, void *dst, dtype dt,
                                 int transpose);

/* Tensors in name order: safetensors_at(m, i) for i < safetensors_count(m). */
size_t safetensors_count(const st_model *m);
const st_tensor *safetensors_at(const st_model *m, size_t i);

/* Unmaps the files and frees everything; NULL is allowed. */
void safetensors_free(st_model *m);

#endif
