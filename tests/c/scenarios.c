/*
 * Small deterministic scenarios: a backup runs (capture on, the copier
 * paused or throttled) while the main thread changes the source in one
 * particular way; once the source is quiet the backup is let finish and must
 * equal the source byte for byte and name for name.
 * Usage: scenarios WORKDIR [SCENARIO]
 */
#include "hbtest.h"
#include <linux/audit.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>

static void must_write(int fd, const void *buf, size_t n) {
    CHECK(write(fd, buf, n) == (ssize_t)n, "write of %zu bytes: %s", n, strerror(errno));
}

static void must_pwrite(int fd, const void *buf, size_t n, off_t off) {
    CHECK(pwrite(fd, buf, n, off) == (ssize_t)n, "pwrite of %zu bytes at %lld: %s", n,
          (long long)off, strerror(errno));
}

/* A file unlinked while open, then written: its name must not come back in
 * the backup, whether the copier had reached it or not. */
static int unlink_open_file_then_write(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "unlink_open_file_then_write");
    char f[PATH_MAX], g[PATH_MAX], p[PATH_MAX], buf[8192];
    make_file(path_join(f, d.src, "f"), 1 << 20, 1);
    make_file(path_join(g, d.src, "g"), 256 << 10, 2);
    make_file(path_join(p, d.src, "keep"), 100000, 3);
    make_file(path_join(p, d.src, "filler"), 8 << 20, 4); /* keeps the copier busy for 2 s */
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 0);
    int fd = open(f, O_RDWR);
    SYS(fd);
    SYS(unlink(f));
    fill_pattern(buf, sizeof buf, 9, 0);
    must_pwrite(fd, buf, sizeof buf, 4096);
    must_write(fd, buf, 100);
    SYS(ftruncate(fd, 3 << 20));
    /* Let the copier reach g, then unlink it open and write past its end. */
    tokubackup_throttle_backup(4 << 20);
    sleep_s(0.6);
    int gd = open(g, O_RDWR);
    SYS(gd);
    SYS(unlink(g));
    must_pwrite(gd, buf, sizeof buf, 1 << 20);
    must_pwrite(fd, buf, sizeof buf, 2 << 20);
    still_running(&b);
    int r = bg_finish(&b);
    must_pwrite(gd, buf, sizeof buf, 0);
    SYS(close(fd));
    SYS(close(gd));
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    CHECK(!exists(path_join(p, d.dst, "f")), "f was unlinked before the stop but is in the backup");
    CHECK(!exists(path_join(p, d.dst, "g")), "g was unlinked before the stop but is in the backup");
    CHECK(compare_trees(d.src, d.dst) == 0, "the backup differs from the quiet source");
    rm_rf(d.base);
    return 0;
}

static int rename_dir_during_copy(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "rename_dir_during_copy");
    char p[PATH_MAX], q[PATH_MAX], name[64];
    SYS(mkdir(path_join(p, d.src, "a"), 0755));
    SYS(mkdir(path_join(p, d.src, "a/deep"), 0755));
    make_file(path_join(p, d.src, "a/deep/x"), 300000, 50);
    for (int i = 0; i < 8; i++) {
        fmt(name, sizeof name, "a/f%d", i);
        make_file(path_join(p, d.src, name), 256 << 10, (unsigned)i);
    }
    make_file(path_join(p, d.src, "z-last"), 1 << 20, 60);
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 1 << 20);
    sleep_s(0.7); /* part of a/ copied */
    SYS(rename(path_join(p, d.src, "a"), path_join(q, d.src, "b")));
    int fd = open(path_join(p, d.src, "b/f1"), O_RDWR);
    SYS(fd);
    must_pwrite(fd, "renamed", 7, 1000);
    SYS(close(fd));
    make_file(path_join(p, d.src, "b/new"), 5000, 70);
    SYS(mkdir(path_join(p, d.src, "a"), 0755));
    make_file(path_join(p, d.src, "a/again"), 7000, 71);
    SYS(rename(path_join(p, d.src, "b/deep"), path_join(q, d.src, "a/deep2")));
    SYS(rename(path_join(p, d.src, "b/f7"), path_join(q, d.src, "a/f7-moved")));
    fd = open(path_join(p, d.src, "a/deep2/x"), O_WRONLY | O_APPEND);
    SYS(fd);
    must_write(fd, "tail", 4);
    SYS(close(fd));
    return finish_and_compare(&b, &d);
}

static int truncate_then_extend(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "truncate_then_extend");
    char f[PATH_MAX], buf[8192];
    make_file(path_join(f, d.src, "f"), 2 << 20, 1);
    make_file(path_join(buf, d.src, "filler"), 2 << 20, 2);
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 1 << 20);
    sleep_s(0.5); /* the copier is inside f */
    int fd = open(f, O_RDWR);
    SYS(fd);
    SYS(ftruncate(fd, 100000));
    fill_pattern(buf, sizeof buf, 5, 0);
    must_pwrite(fd, buf, sizeof buf, 1536 << 10);
    SYS(truncate(f, 3 << 20));
    SYS(fallocate(fd, 0, 3 << 20, 1 << 20));
    must_pwrite(fd, buf, sizeof buf, (3 << 20) + 12345);
    SYS(ftruncate(fd, (3 << 20) + 50000));
    SYS(close(fd));
    return finish_and_compare(&b, &d);
}

/* Two threads append records through their own O_APPEND descriptors. */
#define RECORDS 1500
#define RECLEN 100

struct appender {
    const char *path;
    int id;
};

static void *append_main(void *arg) {
    struct appender *a = arg;
    int fd = open(a->path, O_WRONLY | O_APPEND);
    SYS(fd);
    char rec[RECLEN];
    for (int i = 0; i < RECORDS; i++) {
        memset(rec, 'a' + a->id, sizeof rec);
        fmt(rec, 24, "%d:%06d", a->id, i);
        rec[RECLEN - 1] = '\n';
        must_write(fd, rec, sizeof rec);
    }
    SYS(close(fd));
    return NULL;
}

static int append_two_threads(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "append_two_threads");
    char f[PATH_MAX], p[PATH_MAX];
    make_file(path_join(f, d.src, "log"), 4096, 1);
    make_file(path_join(p, d.src, "filler"), 3 << 20, 2);
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 1 << 20);
    struct appender a[2] = {{f, 0}, {f, 1}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(!pthread_create(&t[i], NULL, append_main, &a[i]), "create");
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    struct stat st;
    SYS(stat(f, &st));
    CHECK(st.st_size == 4096 + 2 * RECORDS * RECLEN, "log has %lld bytes", (long long)st.st_size);
    return finish_and_compare(&b, &d);
}

/* Descriptors that share one offset (dup, dup2, dup3, F_DUPFD), and dup2
 * over a descriptor of another file. */
static int dup_write(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "dup_write");
    char f[PATH_MAX], g[PATH_MAX];
    make_file(path_join(f, d.src, "f"), 1 << 20, 1);
    make_file(path_join(g, d.src, "g"), 1 << 20, 2);
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 0);
    int fd = open(f, O_RDWR);
    SYS(fd);
    SYS(lseek(fd, 1000, SEEK_SET));
    must_write(fd, "AAAAAAAAAA", 10);
    int fd2 = dup(fd);
    SYS(fd2);
    must_write(fd2, "BBBBBBBBBB", 10); /* at 1010: shared offset */
    int fd3 = fcntl(fd, F_DUPFD_CLOEXEC, 50);
    SYS(fd3);
    must_write(fd3, "CCCCCCCCCC", 10);
    SYS(dup2(fd, 77));
    must_write(77, "DDDDDDDDDD", 10);
    SYS(dup3(fd, 78, O_CLOEXEC));
    struct iovec iov[2] = {{"EEEEE", 5}, {"eeeee", 5}};
    CHECK(writev(78, iov, 2) == 10, "writev");
    tokubackup_throttle_backup(2 << 20); /* copy while the rest happens */
    int gd = open(g, O_RDWR);
    SYS(gd);
    SYS(dup2(fd, gd)); /* gd now refers to f, at f's offset */
    must_write(gd, "FFFFFFFFFF", 10);
    SYS(close(fd));
    SYS(lseek(fd2, 500000, SEEK_SET));
    must_write(fd3, "GGGGGGGGGG", 10); /* at 500000 through another copy */
    SYS(lseek(77, 0, SEEK_END));
    must_write(78, "HHHHHHHHHH", 10); /* appended past the old end */
    sleep_s(0.3);
    must_pwrite(gd, "IIIIIIIIII", 10, 20);
    SYS(close(fd2));
    SYS(close(fd3));
    SYS(close(77));
    SYS(close(78));
    SYS(close(gd));
    return finish_and_compare(&b, &d);
}

/* Relative names after chdir, O_TRUNC and O_APPEND opens, and the *at calls
 * with directory descriptors. */
static int chdir_relative_paths(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "chdir_relative_paths");
    char p[PATH_MAX], cwd[PATH_MAX];
    make_file(path_join(p, d.src, "old"), 200000, 1);
    make_file(path_join(p, d.src, "filler"), 1 << 20, 2);
    make_file(path_join(p, d.src, "filler2"), 1 << 20, 3);
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 512 << 10);
    SYS(chdir(d.src));
    SYS(mkdir("rel", 0755));
    int fd = open("rel/x", O_CREAT | O_WRONLY, 0644);
    SYS(fd);
    must_write(fd, "relative x\n", 11);
    SYS(close(fd));
    SYS(rename("rel/x", "y"));
    SYS(chdir("rel"));
    fd = open("../old", O_WRONLY | O_TRUNC);
    SYS(fd);
    must_write(fd, "truncated\n", 10);
    SYS(close(fd));
    fd = open("z", O_CREAT | O_WRONLY | O_APPEND, 0644);
    SYS(fd);
    must_write(fd, "one\n", 4);
    SYS(lseek(fd, 0, SEEK_SET));
    must_write(fd, "two\n", 4); /* O_APPEND: still at the end */
    SYS(close(fd));
    int top = open("..", O_RDONLY | O_DIRECTORY);
    SYS(top);
    int rel = open(".", O_RDONLY | O_DIRECTORY);
    SYS(rel);
    fd = openat(top, "w", O_CREAT | O_RDWR, 0644);
    SYS(fd);
    must_pwrite(fd, "at-created", 10, 4096);
    SYS(renameat(top, "w", rel, "w2"));
    must_pwrite(fd, "after-rename", 12, 0); /* through the descriptor, to the new name */
    SYS(close(fd));
    SYS(mkdirat(top, "m", 0755));
    fd = openat(top, "m/inner", O_CREAT | O_WRONLY, 0644);
    SYS(fd);
    must_write(fd, "inner", 5);
    SYS(close(fd));
    SYS(linkat(rel, "z", top, "zlink", 0));
    SYS(renameat(top, "y", top, "m/y"));
    SYS(unlinkat(top, "filler", 0));
    SYS(symlinkat("m/inner", top, "link"));
    SYS(close(top));
    SYS(close(rel));
    SYS(chdir(cwd));
    return finish_and_compare(&b, &d);
}

/* O_DIRECT writes (aligned) during the copy. Skipped where the file system
 * refuses O_DIRECT (tmpfs). */
static int o_direct_writes(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "o_direct_writes");
    char f[PATH_MAX];
    int fd = open(path_join(f, d.src, "direct"), O_CREAT | O_RDWR | O_DIRECT, 0644);
    if (fd < 0 && errno == EINVAL) {
        printf("O_DIRECT not supported on %s\n", d.src);
        rm_rf(d.base);
        return SKIP_EXIT;
    }
    SYS(fd);
    size_t blk = 64 << 10;
    char *buf;
    CHECK(posix_memalign((void **)&buf, 4096, blk) == 0, "posix_memalign");
    for (int i = 0; i < 32; i++) { /* 2 MiB */
        fill_pattern(buf, blk, (unsigned)i, 0);
        must_pwrite(fd, buf, blk, (off_t)i * (off_t)blk);
    }
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 1 << 20);
    sleep_s(0.4);
    for (int i = 0; i < 32; i += 3) {
        fill_pattern(buf, blk, (unsigned)(100 + i), 0);
        must_pwrite(fd, buf, blk, (off_t)i * (off_t)blk);
    }
    SYS(lseek(fd, 40 * (off_t)blk, SEEK_SET)); /* extends past a hole */
    must_write(fd, buf, 4096);
    SYS(close(fd));
    free(buf);
    return finish_and_compare(&b, &d);
}

/* A descriptor closed where no hook sees it (fclose of an fdopen'd stream
 * closes inside glibc), its number then reused by an eventfd and by a file
 * opened inside glibc (fopen): the eventfd write must not reach the backup
 * (nor fail it), and writes to the reused number's file must. */
static int closed_behind_the_hooks(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "closed_behind_the_hooks");
    char a[PATH_MAX], c[PATH_MAX], p[PATH_MAX], buf[4096];
    make_file(path_join(a, d.src, "a"), 64 << 10, 1);
    make_file(path_join(c, d.src, "c"), 64 << 10, 2);
    make_file(path_join(p, d.src, "filler"), 4 << 20, 3);
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 1 << 20);
    sleep_s(0.5); /* the copier has copied a and c by now */
    int fd = open(a, O_RDWR);
    SYS(fd);
    fill_pattern(buf, sizeof buf, 7, 0);
    must_pwrite(fd, buf, sizeof buf, 0); /* the library learns fd -> a */
    FILE *f = fdopen(fd, "r+");
    CHECK(f != NULL, "fdopen: %s", strerror(errno));
    CHECK(fclose(f) == 0, "fclose"); /* closes fd inside glibc */
    /* The number now names an eventfd: an 8-byte write to it is no file
     * write at all. */
    int e = eventfd(0, 0);
    SYS(e);
    uint64_t one = 1;
    CHECK(write(e, &one, sizeof one) == (ssize_t)sizeof one, "write to eventfd: %s", strerror(errno));
    /* Closed where no hook sees it either: a raw system call. */
    SYS((int)syscall(SYS_close, e));
    FILE *g = fopen(c, "r+"); /* opened inside glibc: the same number again */
    CHECK(g != NULL, "fopen: %s", strerror(errno));
    fill_pattern(buf, sizeof buf, 8, 0);
    must_pwrite(fileno(g), buf, sizeof buf, 8192);
    CHECK(fclose(g) == 0, "fclose");
    tokubackup_throttle_backup(ULONG_MAX);
    return finish_and_compare(&b, &d);
}

/* Make the kernel refuse, in the calling thread only, every request for
 * the timestamps of descriptor fd: fstat, fstatat/newfstatat of it, and
 * statx asking for any time. 0 on success, -1 where seccomp is missing. */
static int refuse_timestamps_of(int fd) {
#if defined(__x86_64__)
    const unsigned times = STATX_ATIME | STATX_MTIME | STATX_CTIME | STATX_BTIME;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 10),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)fd, 0, 8),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fstat, 5, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_newfstatat, 4, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_statx, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3])),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, times),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    return install_seccomp_filter(f, sizeof f / sizeof f[0]);
#else
    (void)fd;
    return -1;
#endif
}

struct timeless_writer {
    const char *path;
    int refused; /* 1 if the filter is in place */
};

/* Writes to an already copied file (mirrored) through a descriptor whose
 * timestamps the kernel refuses to tell: pwrite, write at the file offset,
 * O_APPEND. */
static void *timeless_writer_main(void *arg) {
    struct timeless_writer *w = arg;
    char buf[4096];
    int fd = open(w->path, O_RDWR);
    SYS(fd);
    int app = open(w->path, O_WRONLY | O_APPEND);
    SYS(app);
    if (refuse_timestamps_of(fd) != 0 || refuse_timestamps_of(app) != 0) return NULL;
    struct stat st;
    CHECK(fstat(fd, &st) < 0 && errno == EPERM, "the filter lets fstat through");
    w->refused = 1;
    for (int i = 0; i < 8; i++) {
        fill_pattern(buf, sizeof buf, (unsigned)(40 + i), 0);
        must_pwrite(fd, buf, sizeof buf, (off_t)i * 3 * (off_t)sizeof buf);
    }
    must_write(fd, buf, 1000);
    must_write(app, buf, 3000);
    SYS(close(app));
    SYS(close(fd));
    return NULL;
}

/* A captured write checks that its descriptor still names the file it did
 * (numbers can be closed and reused where no hook sees it) without asking
 * for the file's timestamps: since Linux 6.13 a read timestamp makes the
 * file's next write take a fine-grained time and journal the inode, which
 * an fstat before each captured write did to every write of the server. A
 * thread whose timestamp requests the kernel refuses (seccomp) writes to a
 * copied file; every write must be in the backup. */
static int captured_writes_read_no_timestamps(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "captured_writes_read_no_timestamps");
    char a[PATH_MAX], p[PATH_MAX];
    make_file(path_join(a, d.src, "a"), 64 << 10, 1);
    make_file(path_join(p, d.src, "filler"), 4 << 20, 2);
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 1 << 20);
    sleep_s(0.5); /* the copier has copied a by now */
    struct timeless_writer w = {.path = a};
    pthread_t t;
    CHECK(!pthread_create(&t, NULL, timeless_writer_main, &w), "pthread_create");
    pthread_join(t, NULL);
    if (!w.refused) {
        printf("seccomp filters are not available here\n");
        bg_finish(&b);
        rm_rf(d.base);
        return SKIP_EXIT;
    }
    tokubackup_throttle_backup(ULONG_MAX);
    return finish_and_compare(&b, &d);
}

/* The snapshot check on (HOTBACKUP_VERIFY_SNAPSHOT=1, set while no backup
 * thread runs) and a writer that never pauses, all over a large file: the
 * check must hold the writes while it compares (else it sees the source
 * move under it and reports differences), find the copy equal to the
 * source, and let the writer go on afterwards (not deadlock). */
struct nonstop {
    const char *path;
    atomic_int stop;
    atomic_long writes;
};

static void *nonstop_main(void *arg) {
    struct nonstop *w = arg;
    int fd = open(w->path, O_RDWR);
    SYS(fd);
    char buf[4096];
    for (long i = 0; !atomic_load(&w->stop); i++) {
        fill_pattern(buf, sizeof buf, (int)i, 0);
        must_pwrite(fd, buf, sizeof buf, (i * 7919 % 4096) * (off_t)sizeof buf);
        atomic_fetch_add(&w->writes, 1);
    }
    SYS(close(fd));
    return NULL;
}

static int snapshot_check_with_nonstop_writer(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "snapshot_check_with_nonstop_writer");
    char f[PATH_MAX], p[PATH_MAX];
    make_file(path_join(f, d.src, "hot"), 16 << 20, 1);
    make_file(path_join(p, d.src, "filler"), 4 << 20, 2);
    SYS(setenv("HOTBACKUP_VERIFY_SNAPSHOT", "1", 1));
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 16 << 20);
    struct nonstop w = {.path = f};
    pthread_t t;
    CHECK(!pthread_create(&t, NULL, nonstop_main, &w), "create");
    sleep_s(0.3);
    still_running(&b);
    int r = bg_finish(&b);
    SYS(unsetenv("HOTBACKUP_VERIFY_SNAPSHOT"));
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    long after = atomic_load(&w.writes);
    sleep_s(0.2);
    CHECK(atomic_load(&w.writes) > after, "the writer did not go on after the check");
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    rm_rf(d.base);
    return 0;
}

/* The snapshot check on, one copy thread. A write no hook sees (a raw
 * system call) into a file already copied: the snapshot check must catch
 * it and fail the backup, naming the file and the offset. */
static int snapshot_check_sees_hidden_write(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "snapshot_check_sees_hidden_write");
    char a[PATH_MAX], p[PATH_MAX], buf[4096];
    make_file(path_join(a, d.src, "a"), 64 << 10, 1);
    make_file(path_join(p, d.src, "filler"), 4 << 20, 2);
    SYS(setenv("HOTBACKUP_VERIFY_SNAPSHOT", "1", 1));
    SYS(setenv("HOTBACKUP_COPY_THREADS", "1", 1));
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 1 << 20);
    /* One copy thread takes the files in name order: once bytes of the
     * filler are counted, all of "a" is copied. */
    double t0 = now_s();
    while (atomic_load(&b.copied) <= (64 << 10) + 4096) {
        CHECK(now_s() - t0 < 30, "the copier did not get past the first file");
        sleep_s(0.005);
    }
    int fd = open(a, O_RDWR);
    SYS(fd);
    fill_pattern(buf, sizeof buf, 9, 0);
    CHECK(syscall(SYS_pwrite64, fd, buf, sizeof buf, (off_t)8192) == (long)sizeof buf,
          "raw pwrite: %s", strerror(errno));
    SYS(close(fd));
    still_running(&b);
    int r = bg_finish(&b);
    SYS(unsetenv("HOTBACKUP_VERIFY_SNAPSHOT"));
    SYS(unsetenv("HOTBACKUP_COPY_THREADS"));
    CHECK(r != 0, "the backup succeeded although its copy of %s misses a write", a);
    CHECK(strstr(b.errors.text, "snapshot check") && strstr(b.errors.text, "/src/a and its copy") &&
              strstr(b.errors.text, "offset 8192"),
          "the error does not name the file and the offset: %s", b.errors.text);
    rm_rf(d.base);
    return 0;
}

/* An application that changes a buffer while a write from it is in flight
 * (InnoDB appends redo records to the log block it is writing): the copy
 * must hold the bytes the kernel wrote, not the buffer as it was when the
 * mirror read it - through the page cache and with O_DIRECT (where the
 * file system has it). The snapshot check compares the copy with the
 * source while the writers are held. */
struct churn {
    const char *path;
    int flags;
    unsigned char *buf;
    atomic_int *stop;
};

static void *churn_writer(void *arg) {
    struct churn *c = arg;
    int fd = open(c->path, O_RDWR | c->flags);
    SYS(fd);
    for (long i = 0; !atomic_load(c->stop); i++)
        must_pwrite(fd, c->buf, 65536, (i % 16) * (off_t)65536);
    SYS(close(fd));
    return NULL;
}

static void *churn_mutator(void *arg) {
    struct churn *c = arg;
    while (!atomic_load(c->stop))
        for (size_t i = 0; i < 65536; i += 64) ((volatile unsigned char *)c->buf)[i]++;
    return NULL;
}

static int buffer_changed_during_write(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "buffer_changed_during_write");
    char f[PATH_MAX], g[PATH_MAX], p[PATH_MAX];
    make_file(path_join(f, d.src, "log"), 1 << 20, 1);
    make_file(path_join(g, d.src, "direct"), 1 << 20, 3);
    make_file(path_join(p, d.src, "filler"), 4 << 20, 2);
    int probe = open(g, O_RDWR | O_DIRECT);
    int direct = probe >= 0 ? O_DIRECT : 0;
    if (probe >= 0) SYS(close(probe));
    else printf("O_DIRECT not supported on %s: both writers buffered\n", d.src);
    SYS(setenv("HOTBACKUP_VERIFY_SNAPSHOT", "1", 1));
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 8 << 20);
    atomic_int stop = 0;
    struct churn c[2] = {{.path = f, .flags = 0, .stop = &stop},
                         {.path = g, .flags = direct, .stop = &stop}};
    pthread_t t[4];
    for (int i = 0; i < 2; i++) {
        CHECK(posix_memalign((void **)&c[i].buf, 4096, 65536) == 0, "posix_memalign");
        memset(c[i].buf, i, 65536);
        CHECK(!pthread_create(&t[2 * i], NULL, churn_writer, &c[i]), "create");
        CHECK(!pthread_create(&t[2 * i + 1], NULL, churn_mutator, &c[i]), "create");
    }
    sleep_s(0.3);
    still_running(&b);
    int r = bg_finish(&b);
    SYS(unsetenv("HOTBACKUP_VERIFY_SNAPSHOT"));
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) free(c[i].buf);
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    rm_rf(d.base);
    return 0;
}

int main(int argc, char **argv) {
    static const struct scenario list[] = {
        {"unlink_open_file_then_write", unlink_open_file_then_write},
        {"rename_dir_during_copy", rename_dir_during_copy},
        {"truncate_then_extend", truncate_then_extend},
        {"append_two_threads", append_two_threads},
        {"dup_write", dup_write},
        {"chdir_relative_paths", chdir_relative_paths},
        {"o_direct_writes", o_direct_writes},
        {"closed_behind_the_hooks", closed_behind_the_hooks},
        {"captured_writes_read_no_timestamps", captured_writes_read_no_timestamps},
        {"snapshot_check_with_nonstop_writer", snapshot_check_with_nonstop_writer},
        {"snapshot_check_sees_hidden_write", snapshot_check_sees_hidden_write},
        {"buffer_changed_during_write", buffer_changed_during_write},
    };
    return run_scenarios(argc, argv, list, sizeof list / sizeof list[0]);
}
