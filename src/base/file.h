/* file.h — checking paths, whole-file reads, and read-only views of weight files.
 *
 * Every failure returns LLMRT_ERR_IO (or NOMEM) with a message that starts with the path and says
 * what is wrong in the words of the cause: "does not exist", "permission denied", "is a
 * directory", "is not a regular file (FIFO)", "symlink loop (ELOOP)", "file shrank while
 * loading". Nothing here blocks on a FIFO, reads a directory or a device, or lets a file that is
 * truncated under it crash the process (read tensor bytes with file_map_read, not through data).
 */
#ifndef LLMRT_BASE_FILE_H
#define LLMRT_BASE_FILE_H

#include <stddef.h>

#include "base/status.h"

/* ---- paths ---- */

/* Checks that path names a readable regular file (want_dir 0, symlinks followed) or a searchable
 * directory (want_dir 1). On failure the message is "<path>: <reason>", the reason one of: does
 * not exist; is a dangling symbolic link; permission denied; symlink loop (ELOOP); a component of
 * the path is not a directory (ENOTDIR); is a directory, not a file; is not a regular file
 * (FIFO | socket | character device | block device); is not a directory (regular file | ...). */
llmrt_status path_check(const char *path, int want_dir);

/* 1 when something is at path (even a dangling symlink or a FIFO), 0 when nothing is (ENOENT,
 * ENOTDIR). Use it to choose between alternatives ("model.safetensors, else the index") and then
 * path_check the one chosen, so that a directory or FIFO in its place is reported, not skipped. */
int path_present(const char *path);

/* Older checks, kept for callers not yet moved to path_check: 1 if path is a regular file /
 * directory (symlinks followed), else 0 with no reason. */
int file_exists(const char *path);
int dir_exists(const char *path);

/* path_join(buf, n, "dir", "name") -> "dir/name"; returns LLMRT_ERR_INVALID if too long. */
llmrt_status path_join(char *buf, size_t n, const char *dir, const char *name);

/* ---- whole-file reads ---- */

/* Reads a whole regular file into a NUL-terminated malloc'd buffer (*out, *len without the NUL).
 * Directories, FIFOs and devices are refused (by fstat, before reading), as are files above max
 * bytes ("<path>: is N bytes, above the limit of M"). file_read_all has no limit. */
llmrt_status file_read_max(const char *path, size_t max, char **out, size_t *len);
llmrt_status file_read_all(const char *path, char **out, size_t *len);

/* ---- read-only views of large files ---- */

/* A regular file opened for reading: mapped read-only (data), with its descriptor kept open so
 * that file_map_read can copy any range with pread. Reading through data is fast but a file
 * truncated while mapped makes such a read raise SIGBUS; file_map_read instead fails with
 * "file shrank while loading: <path>". A memory view (file_map_memory) has fd -1 and no path;
 * file_map_read then copies from data.
 * Invariants: data == NULL iff size == 0; fd >= 0 iff opened from a file and not yet closed. */
typedef struct file_map {
    const unsigned char *data; /* [size] the mapping (or the borrowed memory) */
    size_t size;               /* bytes when opened */
    int fd;                    /* kept open for file_map_read, -1 for memory views */
    char *path;                /* owned copy for messages; NULL for memory views */
} file_map;

#define FILE_MAP_EMPTY ((file_map){NULL, 0, -1, NULL})

/* Opens path (which must be a regular file: see path_check's reasons) and maps it. On failure
 * *m is FILE_MAP_EMPTY. */
llmrt_status file_map_open(file_map *m, const char *path);

/* A view of size bytes at data, borrowed: the memory must outlive the view. */
void file_map_memory(file_map *m, const void *data, size_t size);

/* Copies bytes [offset, offset + n) into dst with pread on the kept descriptor (memcpy for a
 * memory view). A range outside the size at opening is LLMRT_ERR_INVALID; a file that has
 * become shorter since it was opened is LLMRT_ERR_IO "file shrank while loading: <path> ...". */
llmrt_status file_map_read(const file_map *m, size_t offset, void *dst, size_t n);

/* Unmaps and closes; leaves *m FILE_MAP_EMPTY. Safe on FILE_MAP_EMPTY. */
void file_map_close(file_map *m);

#endif
