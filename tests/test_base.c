/* test_base.c — dtype conversions, the error message, UTF-8 checks, and file access on hostile
 * paths (directories, FIFOs, links, unreadable and shrinking files). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/dtype.h"
#include "base/file.h"
#include "base/status.h"
#include "base/utf8.h"
#include "testutil.h"

static void test_bf16_round_trip(void) {
    CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
    CHECK(bf16_to_f32(f32_to_bf16(-3.5f)) == -3.5f);
    /* 1 + 2^-8 is halfway between two bf16 values: rounds to even (1.0) */
    CHECK(bf16_to_f32(f32_to_bf16(1.00390625f)) == 1.0f);
    CHECK(bf16_to_f32(f32_to_bf16(1.01171875f)) == 1.015625f);
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

static void test_f16_round_trip(void) {
    float vals[] = {0.0f,     1.0f, -2.0f, 0.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f,
                    3.140625f};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        CHECK_MSG(f16_to_f32(f32_to_f16(vals[i])) == vals[i], "%g", vals[i]);
    CHECK(isinf(f16_to_f32(f32_to_f16(70000.0f))));
    CHECK(f16_to_f32(f32_to_f16(1.0f + 1.0f / 2048)) == 1.0f); /* tie to even */
    CHECK(f16_to_f32(f32_to_f16(1.0f + 3.0f / 2048)) == 1.0f + 2.0f / 1024);
    /* exhaustive: every finite f16 converts to f32 and back unchanged */
    int bad = 0;
    for (unsigned h = 0; h < 65536; h++) {
        if (((h >> 10) & 0x1f) == 0x1f) continue;
        if (f32_to_f16(f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d f16 values do not round-trip", bad);
}

static void test_error_message(void) {
    CHECK(err_set(LLMRT_ERR_FORMAT, "bad %s", "thing") == LLMRT_ERR_FORMAT);
    CHECK(strcmp(llmrt_last_error(), "bad thing") == 0);
    err_wrap(LLMRT_ERR_FORMAT, "%s: ", "file.json");
    CHECK(strcmp(llmrt_last_error(), "file.json: bad thing") == 0);
}

/* Finding 4: conversions read and write through memcpy, so any alignment works (UBSan checks it
 * in `make asan`); every dtype pair at every offset 0..3 against one element at a time. */
static void test_convert_unaligned(void) {
    enum { N = 37 };
    float ref[N];
    test_rand_fill(ref, N, -100.0f, 100.0f, 7);
    ref[3] = 0.0f;
    ref[4] = -0.0f;
    ref[5] = 1e-6f; /* an F16 subnormal */
    unsigned char src[4 * N + 8], dst[4 * N + 8], one[4];
    for (int st = DT_F32; st <= DT_BF16; st++) {
        for (int dt = DT_F32; dt <= DT_BF16; dt++) {
            for (int so = 0; so < 4; so++) {
                for (int d0 = 0; d0 < 4; d0++) {
                    for (int i = 0; i < N; i++) { /* fill the source one element at a time */
                        dtype_convert(one, (dtype)st, &ref[i], DT_F32, 1);
                        memcpy(src + so + (size_t)i * dtype_size((dtype)st), one,
                               dtype_size((dtype)st));
                    }
                    dtype_convert(dst + d0, (dtype)dt, src + so, (dtype)st, N);
                    int bad = 0;
                    for (int i = 0; i < N; i++) {
                        dtype_convert(one, (dtype)dt, src + so + (size_t)i * dtype_size((dtype)st),
                                      (dtype)st, 1);
                        bad += memcmp(one, dst + d0 + (size_t)i * dtype_size((dtype)dt),
                                      dtype_size((dtype)dt)) != 0;
                    }
                    CHECK_MSG(bad == 0, "%s -> %s at offsets %d/%d: %d differ",
                              dtype_name((dtype)st), dtype_name((dtype)dt), so, d0, bad);
                }
            }
        }
    }
    dtype_convert(NULL, DT_F32, NULL, DT_BF16, 0); /* n == 0: NULL is fine */
    dtype_convert(NULL, DT_F16, NULL, DT_F16, 0);
    /* transpose: [2, 3] BF16 at an odd offset -> [3, 2] F32 */
    const float m[6] = {1, 2, 3, 4, 5, 6}, mt[6] = {1, 4, 2, 5, 3, 6};
    dtype_convert(src + 1, DT_BF16, m, DT_F32, 6);
    float out[6];
    dtype_convert_transpose(out, DT_F32, src + 1, DT_BF16, 2, 3);
    CHECK(memcmp(out, mt, sizeof out) == 0);
}

static void test_utf8(void) {
    CHECK(utf8_valid("", 0) && utf8_valid("caf\xc3\xa9 \xf0\x9f\x98\x80", 10));
    CHECK(!utf8_valid("\xc3", 1) && !utf8_valid("\xed\xa0\x80", 3) && !utf8_valid("\xc0\xaf", 2));
    CHECK(!utf8_valid("\xf4\x90\x80\x80", 4) && !utf8_valid("\xff", 1));
    CHECK(utf8_valid_prefix("ab\xe2\x82", 4) == 2);
    /* characters as Python counts them after errors="replace" */
    CHECK(utf8_chars("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10) == 4);
    CHECK(utf8_chars("\xff\xfe", 2) == 2 && utf8_chars("ab\xe2\x82", 4) == 3);
    CHECK(utf8_chars("", 0) == 0);
    size_t k;
    CHECK(utf8_decode((const unsigned char *)"\xe2\x82\xac", 3, &k) == 0x20AC && k == 3);
    CHECK(utf8_decode((const unsigned char *)"\xe2\x82\xac", 2, &k) == 0xFFFD && k == 2);
    CHECK(utf8_decode((const unsigned char *)"\xf0\x9f", 2, &k) == 0xFFFD && k == 2);
    CHECK(utf8_decode((const unsigned char *)"\x80x", 2, &k) == 0xFFFD && k == 1);
    CHECK(utf8_check((const unsigned char *)"\xe0\x80\x80", 3) == -1);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

/* Finding 2: every kind of thing at a path is named for what it is, before anything is read. A
 * directory or FIFO is never read (a directory used to read "LONG_MAX bytes"; a FIFO would
 * block). */
static void test_path_reasons(void) {
    const char *dir = test_tmpdir("base-paths");
    char file[512], sub[512], fifo[512], loop[512], dangling[512], under[600];
    snprintf(file, sizeof file, "%s/file.json", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(loop, sizeof loop, "%s/loop", dir);
    snprintf(dangling, sizeof dangling, "%s/dangling", dir);
    snprintf(under, sizeof under, "%s/x", file);
    write_text(file, "{\"a\": 1}");
    CHECK(mkdir(sub, 0755) == 0 && mkfifo(fifo, 0644) == 0);
    CHECK(symlink("loop", loop) == 0 && symlink("nowhere", dangling) == 0);

    CHECK_OK(path_check(file, 0));
    CHECK_OK(path_check(sub, 1));
    CHECK_ERR(path_check(sub, 0), LLMRT_ERR_IO, "sub: is a directory, not a file");
    CHECK_ERR(path_check(file, 1), LLMRT_ERR_IO, "file.json: is not a directory (regular file)");
    CHECK_ERR(path_check(fifo, 0), LLMRT_ERR_IO, "fifo: is not a regular file (FIFO)");
    CHECK_ERR(path_check(fifo, 1), LLMRT_ERR_IO, "fifo: is not a directory (FIFO)");
    CHECK_ERR(path_check("/dev/null", 0), LLMRT_ERR_IO, "is not a regular file (character device)");
    CHECK_ERR(path_check(loop, 0), LLMRT_ERR_IO, "loop: symlink loop (ELOOP");
    CHECK_ERR(path_check(dangling, 0), LLMRT_ERR_IO, "dangling: is a dangling symbolic link");
    CHECK_ERR(path_check(under, 0), LLMRT_ERR_IO, "a component of the path is not a directory");
    CHECK_ERR(path_check("/nonexistent/llmrt", 1), LLMRT_ERR_IO,
              "/nonexistent/llmrt: does not exist");
    CHECK(path_present(file) && path_present(fifo) && path_present(dangling) && path_present(loop));
    CHECK(!path_present("/nonexistent/llmrt") && !path_present(under));
    CHECK(file_exists(file) && !file_exists(sub) && dir_exists(sub) && !dir_exists(fifo));

    char *buf = (char *)1;
    size_t len = 99;
    CHECK_ERR(file_read_all(sub, &buf, &len), LLMRT_ERR_IO, "sub: is a directory, not a file");
    CHECK(buf == NULL && len == 0);
    CHECK_ERR(file_read_all(fifo, &buf, &len), LLMRT_ERR_IO, "fifo: is not a regular file (FIFO)");
    CHECK_ERR(file_read_all(loop, &buf, &len), LLMRT_ERR_IO, "symlink loop");
    CHECK_ERR(file_read_all(dangling, &buf, &len), LLMRT_ERR_IO, "dangling symbolic link");
    CHECK_OK(file_read_all(file, &buf, &len));
    CHECK(buf && len == 8 && strcmp(buf, "{\"a\": 1}") == 0);
    free(buf);
    CHECK_ERR(file_read_max(file, 7, &buf, &len), LLMRT_ERR_IO, "is 8 bytes, above the limit of 7");
    CHECK_OK(file_read_max(file, 8, &buf, &len));
    free(buf);
    /* a file that reports size 0 but has content (/proc) is read to its end */
    CHECK_OK(file_read_all("/proc/self/status", &buf, &len));
    CHECK(buf && len > 0 && strstr(buf, "Name:") != NULL);
    free(buf);
    file_map m;
    CHECK_ERR(file_map_open(&m, sub), LLMRT_ERR_IO, "is a directory, not a file");
    CHECK(m.fd == -1 && m.data == NULL && m.path == NULL);
    CHECK_ERR(file_map_open(&m, fifo), LLMRT_ERR_IO, "is not a regular file (FIFO)");
}

/* An unreadable file is "permission denied", not "invalid JSON at line -1" (root reads
 * everything, so the check runs in a child that drops to nobody). */
static void test_permission_denied(void) {
    const char *dir = test_tmpdir("base-perm");
    char file[512], closed[512], inner[600];
    snprintf(file, sizeof file, "%s/secret.json", dir);
    snprintf(closed, sizeof closed, "%s/closed", dir);
    snprintf(inner, sizeof inner, "%s/closed/x.json", dir);
    write_text(file, "{}");
    CHECK(chmod(file, 0000) == 0);
    CHECK(mkdir(closed, 0700) == 0);
    write_text(inner, "{}");
    CHECK(chmod(dir, 0755) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(2);
        int bad = 0;
        char *buf;
        size_t len;
        bad |= path_check(file, 0) != LLMRT_ERR_IO ||
               !strstr(llmrt_last_error(), "secret.json: permission denied");
        bad |= file_read_all(file, &buf, &len) != LLMRT_ERR_IO ||
               !strstr(llmrt_last_error(), "secret.json: permission denied");
        bad |= path_check(closed, 1) != LLMRT_ERR_IO ||
               !strstr(llmrt_last_error(), "closed: permission denied");
        bad |= path_check(inner, 0) != LLMRT_ERR_IO ||
               !strstr(llmrt_last_error(), "x.json: permission denied");
        if (bad) fprintf(stderr, "child: last message: %s\n", llmrt_last_error());
        _exit(bad);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

/* Finding 3: file_map_read copies with pread; a file truncated after it was mapped gives "file
 * shrank while loading: <path>" (reading the mapping there would raise SIGBUS). */
static void test_map_read_shrink(void) {
    const char *dir = test_tmpdir("base-map");
    char file[512];
    snprintf(file, sizeof file, "%s/w.bin", dir);
    unsigned char bytes[8192];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (unsigned char)(i * 7);
    FILE *f = fopen(file, "wb");
    CHECK(f && fwrite(bytes, 1, sizeof bytes, f) == sizeof bytes);
    fclose(f);
    file_map m;
    CHECK_OK(file_map_open(&m, file));
    CHECK(m.size == sizeof bytes && m.fd >= 0 && m.path && strcmp(m.path, file) == 0);
    unsigned char got[100];
    CHECK_OK(file_map_read(&m, 4000, got, 100));
    CHECK(memcmp(got, bytes + 4000, 100) == 0);
    CHECK_ERR(file_map_read(&m, 8150, got, 100), LLMRT_ERR_INVALID, "past the end (8192 bytes)");
    CHECK(truncate(file, 4050) == 0);
    CHECK_OK(file_map_read(&m, 3950, got, 100));
    CHECK_ERR(file_map_read(&m, 4000, got, 100), LLMRT_ERR_IO, "file shrank while loading: ");
    CHECK_MSG(strstr(llmrt_last_error(), "w.bin (it was 8192 bytes when opened, is now 4050") !=
                  NULL,
              "%s", llmrt_last_error());
    file_map_close(&m);
    CHECK(m.fd == -1 && m.data == NULL);
    file_map_close(&m); /* twice is fine */
    file_map_memory(&m, bytes, sizeof bytes);
    CHECK_OK(file_map_read(&m, 10, got, 10));
    CHECK(memcmp(got, bytes + 10, 10) == 0);
    CHECK_ERR(file_map_read(&m, 8190, got, 10), LLMRT_ERR_INVALID, "<memory>");
    file_map_close(&m);
}

int main(void) {
    RUN(test_bf16_round_trip);
    RUN(test_f16_round_trip);
    RUN(test_error_message);
    RUN(test_convert_unaligned);
    RUN(test_utf8);
    RUN(test_path_reasons);
    RUN(test_permission_denied);
    RUN(test_map_read_shrink);
    return test_summary();
}
