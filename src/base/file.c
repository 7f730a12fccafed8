/* file.c — path checks, whole-file reads and read-only file views, with errors naming the path
 * and the cause (see file.h). Files are opened with O_NONBLOCK so that opening a FIFO never
 * waits for a writer, and their type is checked with fstat on the opened descriptor (no race
 * between a check and the open) before anything is read or mapped. */
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- reasons ---- */

static const char *errno_reason(int e) {
    switch (e) {
    case ENOENT:
        return "does not exist";
    case EACCES:
    case EPERM:
        return "permission denied";
    case ELOOP:
        return "symlink loop (ELOOP: too many levels of symbolic links)";
    case ENOTDIR:
        return "a component of the path is not a directory (ENOTDIR)";
    case ENAMETOOLONG:
        return "the path is too long (ENAMETOOLONG)";
    default:
        return strerror(e);
    }
}

static const char *type_name(mode_t mode) {
    if (S_ISREG(mode)) return "regular file";
    if (S_ISDIR(mode)) return "directory";
    if (S_ISFIFO(mode)) return "FIFO";
    if (S_ISSOCK(mode)) return "socket";
    if (S_ISCHR(mode)) return "character device";
    if (S_ISBLK(mode)) return "block device";
    if (S_ISLNK(mode)) return "symbolic link";
    return "special file";
}

/* The message for a failed open/stat of path with errno e. */
static llmrt_status fail_errno(const char *path, int e) {
    struct stat ls;
    if (e == ENOENT && lstat(path, &ls) == 0 && S_ISLNK(ls.st_mode))
        return err_set(LLMRT_ERR_IO, "%s: is a dangling symbolic link (its target does not exist)",
                       path);
    return err_set(LLMRT_ERR_IO, "%s: %s", path, errno_reason(e));
}

/* The message for a path whose type is wrong (want_dir: a directory was wanted). */
static llmrt_status fail_type(const char *path, mode_t mode, int want_dir) {
    if (want_dir)
        return err_set(LLMRT_ERR_IO, "%s: is not a directory (%s)", path, type_name(mode));
    if (S_ISDIR(mode)) return err_set(LLMRT_ERR_IO, "%s: is a directory, not a file", path);
    return err_set(LLMRT_ERR_IO, "%s: is not a regular file (%s)", path, type_name(mode));
}

/* ---- paths ---- */

llmrt_status path_check(const char *path, int want_dir) {
    struct stat st;
    if (stat(path, &st) != 0) return fail_errno(path, errno);
    if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
        return fail_type(path, st.st_mode, want_dir);
    if (access(path, want_dir ? X_OK : R_OK) != 0) return fail_errno(path, errno);
    return LLMRT_OK;
}

int path_present(const char *path) {
    struct stat st;
    if (lstat(path, &st) == 0) return 1;
    return errno != ENOENT && errno != ENOTDIR;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

llmrt_status path_join(char *buf, size_t n, const char *dir, const char *name) {
    int w = snprintf(buf, n, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= n)
        return err_set(LLMRT_ERR_INVALID, "path too long: %s/%s", dir, name);
    return LLMRT_OK;
}

/* Opens path for reading and checks that it is a regular file; *st gets its fstat. */
static llmrt_status open_regular(const char *path, int *fd_out, struct stat *st) {
    *fd_out = -1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return fail_errno(path, errno);
    if (fstat(fd, st) != 0) {
        int e = errno;
        close(fd);
        return err_set(LLMRT_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return fail_type(path, st->st_mode, 0);
    }
    *fd_out = fd;
    return LLMRT_OK;
}

/* ---- whole-file reads ---- */

llmrt_status file_read_max(const char *path, size_t max, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    int fd;
    struct stat st;
    TRY(open_regular(path, &fd, &st));
    if ((uintmax_t)st.st_size > max) {
        close(fd);
        return err_set(LLMRT_ERR_IO, "%s: is %jd bytes, above the limit of %zu for this file", path,
                       (intmax_t)st.st_size, max);
    }
    /* read to the end: the size is a hint (a file may change; /proc files report 0) */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    llmrt_status s = LLMRT_OK;
    while (buf) {
        char probe[512], *at = buf + n;
        size_t room = cap - 1 - n;
        if (room == 0) { /* full: read into probe to see whether there is more */
            at = probe;
            room = sizeof probe;
        }
        ssize_t r = read(fd, at, room);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            s = err_set(LLMRT_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        if (n + (size_t)r > max) {
            s = err_set(LLMRT_ERR_IO, "%s: grew above the limit of %zu bytes while being read",
                        path, max);
            break;
        }
        if (at == probe) {
            size_t ncap = cap < SIZE_MAX / 4 ? 2 * cap + sizeof probe : SIZE_MAX;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap = ncap;
            memcpy(buf + n, probe, (size_t)r);
        }
        n += (size_t)r;
    }
    close(fd);
    if (!buf) return err_set(LLMRT_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap);
    if (s != LLMRT_OK) {
        free(buf);
        return s;
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return LLMRT_OK;
}

llmrt_status file_read_all(const char *path, char **out, size_t *len) {
    return file_read_max(path, SIZE_MAX - 1, out, len);
}

/* ---- read-only views ---- */

llmrt_status file_map_open(file_map *m, const char *path) {
    *m = FILE_MAP_EMPTY;
    int fd;
    struct stat st;
    TRY(open_regular(path, &fd, &st));
    char *copy = strdup(path);
    if (!copy) {
        close(fd);
        return err_set(LLMRT_ERR_NOMEM, "%s: out of memory", path);
    }
    if (st.st_size > 0) {
        if ((uintmax_t)st.st_size > SIZE_MAX) {
            close(fd);
            free(copy);
            return err_set(LLMRT_ERR_IO, "%s: too large to map", path);
        }
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(copy);
            return err_set(LLMRT_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    m->fd = fd;
    m->path = copy;
    return LLMRT_OK;
}

void file_map_memory(file_map *m, const void *data, size_t size) {
    *m = FILE_MAP_EMPTY;
    if (size) {
        m->data = data;
        m->size = size;
    }
}

llmrt_status file_map_read(const file_map *m, size_t offset, void *dst, size_t n) {
    const char *name = m->path ? m->path : "<memory>";
    if (offset > m->size || n > m->size - offset)
        return err_set(LLMRT_ERR_INVALID, "%s: read of bytes %zu..%zu past the end (%zu bytes)",
                       name, offset, offset + n, m->size);
    if (n == 0) return LLMRT_OK;
    if (m->fd < 0) {
        memcpy(dst, m->data + offset, n);
        return LLMRT_OK;
    }
    unsigned char *d = dst;
    size_t done = 0;
    while (done < n) {
        size_t want = n - done < ((size_t)1 << 30) ? n - done : (size_t)1 << 30;
        ssize_t r = pread(m->fd, d + done, want, (off_t)(offset + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return err_set(LLMRT_ERR_IO, "%s: cannot read bytes %zu..%zu: %s", name, offset + done,
                           offset + n, strerror(errno));
        if (r == 0) {
            struct stat st;
            intmax_t now = fstat(m->fd, &st) == 0 ? (intmax_t)st.st_size : -1;
            return err_set(LLMRT_ERR_IO,
                           "file shrank while loading: %s (it was %zu bytes when opened, is now "
                           "%jd; bytes %zu..%zu are gone)",
                           name, m->size, now, offset + done, offset + n);
        }
        done += (size_t)r;
    }
    return LLMRT_OK;
}

void file_map_close(file_map *m) {
    if (m->data && m->fd >= 0) munmap((void *)m->data, m->size);
    if (m->fd >= 0) close(m->fd);
    free(m->path);
    *m = FILE_MAP_EMPTY;
}
