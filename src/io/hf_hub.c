/* hf_hub.c — Hugging Face names resolved in the local cache, the layout huggingface_hub writes:
 *   <cache>/models--ORG--NAME/refs/<revision>      the commit hash of a branch or tag
 *   <cache>/models--ORG--NAME/snapshots/<commit>/  the files (symlinks into ../../blobs)
 */
#include "io/hf_hub.h"
#include "base/file.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

llmrt_status hf_cache_dir(char *out, size_t n) {
    const char *v;
    int w;
    if ((v = getenv("HF_HUB_CACHE")) && *v)
        w = snprintf(out, n, "%s", v);
    else if ((v = getenv("HUGGINGFACE_HUB_CACHE")) && *v)
        w = snprintf(out, n, "%s", v);
    else if ((v = getenv("HF_HOME")) && *v)
        w = snprintf(out, n, "%s/hub", v);
    else if ((v = getenv("XDG_CACHE_HOME")) && *v)
        w = snprintf(out, n, "%s/huggingface/hub", v);
    else if ((v = getenv("HOME")) && *v)
        w = snprintf(out, n, "%s/.cache/huggingface/hub", v);
    else
        return err_set(LLMRT_ERR_IO, "no Hugging Face cache: neither HF_HUB_CACHE, HF_HOME nor "
                                     "HOME is set");
    if (w < 0 || (size_t)w >= n) return err_set(LLMRT_ERR_INVALID, "the cache path is too long");
    return LLMRT_OK;
}

/* A name of the Hub: NAME or ORG/NAME, letters, digits and -_. only, optional @REVISION. */
/* The error for a path that stat cannot follow: what is (not) there, as precisely as known. */
static llmrt_status path_absent_error(const char *p) {
    int e = errno;
    struct stat ls;
    if (e == ELOOP) return err_set(LLMRT_ERR_IO, "%s: symlink loop (ELOOP)", p);
    if (e == EACCES) return err_set(LLMRT_ERR_IO, "%s: permission denied", p);
    if (e == ENOTDIR)
        return err_set(LLMRT_ERR_IO, "%s: a component of the path is not a directory (ENOTDIR)", p);
    if (lstat(p, &ls) == 0) return err_set(LLMRT_ERR_IO, "%s: is a dangling symbolic link", p);
    return err_set(LLMRT_ERR_IO, "%s: no such file or folder", p);
}

static int looks_like_name(const char *s) {
    if (!*s || *s == '.' || *s == '/' || *s == '~') return 0;
    int slashes = 0;
    for (const char *p = s; *p && *p != '@'; p++) {
        if (*p == '/')
            slashes++;
        else if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
            return 0;
    }
    return slashes <= 1 && s[strlen(s) - 1] != '/';
}

static int is_commit(const char *s) {
    size_t n = strlen(s);
    if (n != 40) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

llmrt_status hf_resolve(const char *spec, char *out, size_t n) {
    if (!spec || !*spec) return err_set(LLMRT_ERR_INVALID, "no model or tokenizer given");
    if (exists(spec) || path_present(spec) || !looks_like_name(spec)) {
        if (!exists(spec)) return path_absent_error(spec);
        if ((size_t)snprintf(out, n, "%s", spec) >= n)
            return err_set(LLMRT_ERR_INVALID, "%s: the path is too long", spec);
        return LLMRT_OK;
    }
    char name[512], rev[256] = "main";
    if ((size_t)snprintf(name, sizeof name, "%s", spec) >= sizeof name)
        return err_set(LLMRT_ERR_INVALID, "%s: the name is too long", spec);
    char *at = strchr(name, '@');
    if (at) {
        *at = '\0';
        if (!at[1] || strchr(at + 1, '/') || strstr(at + 1, ".."))
            return err_set(LLMRT_ERR_INVALID, "%s: bad revision after '@'", spec);
        snprintf(rev, sizeof rev, "%s", at + 1);
    }
    char cache[2048], repo[3072], snap[4096], refp[4096];
    TRY(hf_cache_dir(cache, sizeof cache));
    /* models--ORG--NAME */
    char flat[600];
    size_t k = 0;
    for (const char *p = name; *p && k + 3 < sizeof flat; p++) {
        if (*p == '/') {
            flat[k++] = '-';
            flat[k++] = '-';
        } else {
            flat[k++] = *p;
        }
    }
    flat[k] = '\0';
    snprintf(repo, sizeof repo, "%s/models--%s", cache, flat);
    char commit[256] = "";
    if (is_commit(rev)) {
        snprintf(commit, sizeof commit, "%s", rev);
    } else {
        /* read as any file of the model: a FIFO there is refused, not waited on (fopen
         * blocked); what it holds must be a commit hash, not a path out of snapshots/ */
        snprintf(refp, sizeof refp, "%s/refs/%s", repo, rev);
        if (path_present(refp)) {
            char *text;
            size_t len;
            TRY(path_check(refp, 0));
            TRY(file_read_max(refp, 4096, &text, &len));
            snprintf(commit, sizeof commit, "%.*s", (int)strcspn(text, " \r\n"), text);
            free(text);
            if (!is_commit(commit))
                return err_set(LLMRT_ERR_FORMAT,
                               "%s: holds '%s', not a commit hash (40 hexadecimal digits)", refp,
                               commit);
        }
    }
    if (commit[0]) {
        snprintf(snap, sizeof snap, "%s/snapshots/%s", repo, commit);
        if (is_dir(snap)) {
            if ((size_t)snprintf(out, n, "%s", snap) >= n)
                return err_set(LLMRT_ERR_INVALID, "%s: the path is too long", snap);
            return LLMRT_OK;
        }
    }
    return err_set(LLMRT_ERR_IO,
                   "'%s' is not a folder, and revision '%s' of %s is not in the Hugging Face "
                   "cache (looked in %s); llmrt does not download models: fetch it first with "
                   "`hf download %s%s%s` (or `huggingface-cli download`), or give a folder",
                   spec, rev, name, is_dir(repo) ? repo : cache, name,
                   strcmp(rev, "main") ? " --revision " : "", strcmp(rev, "main") ? rev : "");
}
