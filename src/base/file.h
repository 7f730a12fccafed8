/* file.h — read-only memory maps and whole-file reads. */
#ifndef LLMRT_BASE_FILE_H
#define LLMRT_BASE_FILE_H

#include <stddef.h>

#include "base/status.h"

/* A read-only mapping of a whole file. data is NULL for an empty file. */
typedef struct file_map {
    const unsigned char *data; /* [size] */
    size_t size;
} file_map;

llmrt_status file_map_open(file_map *m, const char *path);
void file_map_close(file_map *m);

/* Reads a whole file into a NUL-terminated malloc'd buffer (*out, *len without the NUL). */
llmrt_status file_read_all(const char *path, char **out, size_t *len);

int file_exists(const char *path);
int dir_exists(const char *path);

/* path_join(buf, n, "dir", "name") -> "dir/name"; returns LLMRT_ERR_INVALID if too long. */
llmrt_status path_join(char *buf, size_t n, const char *dir, const char *name);

#endif
