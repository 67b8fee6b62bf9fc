/*
 * Holes stay holes: a 1 GiB sparse file with a few data blocks (one of them
 * written while the backup runs) is backed up with the same size and bytes,
 * and the copy allocates no more than twice the source's blocks.
 * Usage: sparse_holes WORKDIR [sparse_1gib]
 */
#include "hbtest.h"

#define GIB (1ll << 30)

static void put(int fd, long long off, unsigned seed) {
    char buf[8192];
    fill_pattern(buf, sizeof buf, seed, 0);
    CHECK(pwrite(fd, buf, sizeof buf, off) == (ssize_t)sizeof buf, "pwrite at %lld", off);
}

static int sparse_1gib(const char *work) {
    struct dirs d;
    scenario_dirs(&d, work, "sparse_1gib");
    char p[PATH_MAX], q[PATH_MAX];
    int fd = open(path_join(p, d.src, "sparse"), O_CREAT | O_RDWR, 0644);
    SYS(fd);
    SYS(ftruncate(fd, GIB));
    put(fd, 0, 1);
    put(fd, 100ll << 20, 2);
    put(fd, (512ll << 20) + 12345, 3);
    put(fd, GIB - 8192, 4);
    struct bg_backup b;
    bg_start(&b, d.src, d.dst, 0);
    /* Captured while the copier waits: lands in a hole of the copy too. */
    put(fd, 700ll << 20, 5);
    int r = bg_finish(&b);
    SYS(close(fd));
    CHECK(r == 0, "backup returned %d: %s", r, b.errors.text);
    struct stat ss, ds;
    SYS(stat(p, &ss));
    SYS(stat(path_join(q, d.dst, "sparse"), &ds));
    CHECK(ss.st_size == GIB && ds.st_size == ss.st_size, "sizes %lld and %lld",
          (long long)ss.st_size, (long long)ds.st_size);
    printf("source %lld blocks, backup %lld blocks\n", (long long)ss.st_blocks,
           (long long)ds.st_blocks);
    CHECK(ds.st_blocks <= 2 * ss.st_blocks, "holes were filled: %lld blocks in the backup, %lld in "
          "the source", (long long)ds.st_blocks, (long long)ss.st_blocks);
    long long diff = first_difference(p, q);
    CHECK(diff < 0, "the backup differs at byte %lld", diff);
    rm_rf(d.base);
    return 0;
}

int main(int argc, char **argv) {
    static const struct scenario list[] = {{"sparse_1gib", sparse_1gib}};
    return run_scenarios(argc, argv, list, 1);
}
