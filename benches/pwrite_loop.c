/*
 * Micro-benchmarks of libHotBackup's hooks, run by ci/bench-engine.sh.
 * Not linked against the library: the same binary runs with and without
 * LD_PRELOAD, and finds the C API with dlsym when it needs a backup.
 *
 *   pwrite_loop idle DIR N       N 4 KiB pwrites over a 64 MiB page-cache file
 *   pwrite_loop capture DIR N    the same while a backup of DIR captures it
 *                                (throttle 0: capture on, copier paused, so
 *                                no write is mirrored), then lets it finish
 *   pwrite_loop mirror DIR N     the same while a backup of DIR that has
 *                                copied everything captures it (held in its
 *                                before-stop-capture callback): every write
 *                                is mirrored
 *   pwrite_loop rss DIR N        VmRSS/VmHWM added by opening N files of DIR
 *                                during a backup (without the library: no backup)
 *   pwrite_loop backup SRC DST   one backup, wall time
 * Prints "key value" lines: the loop's wall time per pwrite, and the CPU time
 * the whole process spent per pwrite meanwhile (the library's threads too).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef int (*create_fn)(const char **, const char **, int, void *, void *, void *, void *, void *,
                         void *, void *, void *, void *, void *);
typedef void (*throttle_fn)(unsigned long);

static create_fn create_backup;
static throttle_fn throttle;
static volatile int polled, held, release;
static const char *bsrc, *bdst;
static int bresult;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of the whole process (every thread: the library's too). */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "pwrite_loop: %s: %s\n", what, strerror(errno));
    exit(2);
}

static int poll_cb(float p, const char *s, void *x) {
    (void)p, (void)s, (void)x;
    __atomic_store_n(&polled, 1, __ATOMIC_SEQ_CST);
    return 0;
}

/* Copy done, capture still on: hold it there until the loop is over. */
static void before_stop_cb(void *x) {
    (void)x;
    __atomic_store_n(&held, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&release, __ATOMIC_SEQ_CST)) usleep(1000);
}

static void *backup_thread(void *arg) {
    const char *s[] = {bsrc}, *d[] = {bdst};
    bresult = create_backup(s, d, 1, (void *)poll_cb, NULL, NULL, NULL, NULL, NULL,
                            arg ? (void *)before_stop_cb : NULL, NULL, NULL, NULL);
    return NULL;
}

static int have_library(void) {
    create_backup = (create_fn)dlsym(RTLD_DEFAULT, "tokubackup_create_backup");
    throttle = (throttle_fn)dlsym(RTLD_DEFAULT, "tokubackup_throttle_backup");
    return create_backup && throttle;
}

/* Start a backup of dir (into dir.bak); returns once capture is on with the
 * copier paused, or (copied) once everything is copied and capture is held
 * on. */
static pthread_t start_backup(const char *dir, int copied) {
    static char dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s.bak", dir);
    if (mkdir(dst, 0700) < 0) die(dst); /* the library wants it existing and empty */
    bsrc = dir;
    bdst = dst;
    throttle(copied ? ULONG_MAX : 0);
    pthread_t t;
    if (pthread_create(&t, NULL, backup_thread, copied ? (void *)1 : NULL)) die("pthread_create");
    while (!__atomic_load_n(copied ? &held : &polled, __ATOMIC_SEQ_CST)) usleep(1000);
    return t;
}

static void finish_backup(pthread_t t) {
    __atomic_store_n(&release, 1, __ATOMIC_SEQ_CST);
    throttle(ULONG_MAX);
    pthread_join(t, NULL);
    if (bresult) {
        fprintf(stderr, "pwrite_loop: backup returned %d\n", bresult);
        exit(1);
    }
}

#define FILE_SIZE (64l << 20)

/* The measured loop (callgrind --toggle-collect=timed_loop counts only it). */
__attribute__((noinline)) void timed_loop(int fd, long n, char *buf) {
    for (long i = 0; i < n; i++) {
        off_t off = (off_t)((i * 7919) % (FILE_SIZE / 4096)) * 4096;
        if (pwrite(fd, buf, 4096, off) != 4096) die("pwrite");
    }
}

/* capture: 0 no backup, 1 copier paused, 2 everything copied */
static int loop(const char *dir, long n, int capture) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/data", dir);
    int fd = open(path, O_CREAT | O_RDWR, 0644);
    if (fd < 0) die(path);
    static char buf[4096];
    memset(buf, 'x', sizeof buf);
    for (long off = 0; off < FILE_SIZE; off += sizeof buf)
        if (pwrite(fd, buf, sizeof buf, off) != (ssize_t)sizeof buf) die("fill");
    pthread_t t = 0;
    if (capture) {
        if (!have_library()) {
            fprintf(stderr, "pwrite_loop: capture needs libHotBackup preloaded\n");
            return 2;
        }
        t = start_backup(dir, capture == 2);
    }
    timed_loop(fd, n / 10, buf); /* warm up */
    double t0 = now_s(), c0 = cpu_s();
    timed_loop(fd, n, buf);
    double el = now_s() - t0, cpu = cpu_s() - c0;
    close(fd);
    if (capture) finish_backup(t);
    printf("ns_per_pwrite %.1f\n", el * 1e9 / (double)n);
    printf("cpu_ns_per_pwrite %.1f\n", cpu * 1e9 / (double)n);
    return 0;
}

static long status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') v = atol(line + k + 1);
    if (f) fclose(f);
    return v;
}

static int rss(const char *dir, long n) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    char path[PATH_MAX];
    for (long i = 0; i < n; i++) { /* the files exist before the backup */
        snprintf(path, sizeof path, "%s/f%ld", dir, i);
        int fd = open(path, O_CREAT | O_WRONLY, 0644);
        if (fd < 0 || write(fd, "x", 1) != 1) die(path);
        close(fd);
    }
    int lib = have_library();
    pthread_t t = 0;
    if (lib) t = start_backup(dir, 0);
    long rss0 = status_kib("VmRSS"), hwm0 = status_kib("VmHWM");
    int *fds = malloc(sizeof(int) * (size_t)n);
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%ld", dir, i);
        if ((fds[i] = open(path, O_RDWR)) < 0) die(path);
        if (pwrite(fds[i], "y", 1, 0) != 1) die("pwrite");
    }
    long rss1 = status_kib("VmRSS"), hwm1 = status_kib("VmHWM");
    for (long i = 0; i < n; i++) close(fds[i]);
    free(fds);
    if (lib) finish_backup(t);
    printf("rss_added_kib %ld\nhwm_added_kib %ld\nhwm_kib %ld\n", rss1 - rss0, hwm1 - hwm0, hwm1);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: pwrite_loop idle|capture|mirror|rss DIR N | backup SRC DST\n");
        return 2;
    }
    if (!strcmp(argv[1], "idle")) return loop(argv[2], atol(argv[3]), 0);
    if (!strcmp(argv[1], "capture")) return loop(argv[2], atol(argv[3]), 1);
    if (!strcmp(argv[1], "mirror")) return loop(argv[2], atol(argv[3]), 2);
    if (!strcmp(argv[1], "rss")) return rss(argv[2], atol(argv[3]));
    if (!strcmp(argv[1], "backup")) {
        if (!have_library()) return 2;
        bsrc = argv[2];
        bdst = argv[3];
        throttle(ULONG_MAX);
        if (mkdir(bdst, 0700) < 0) die(bdst);
        double t0 = now_s();
        backup_thread(NULL);
        if (bresult) return 1;
        printf("backup_s %.3f\n", now_s() - t0);
        return 0;
    }
    return 2;
}
