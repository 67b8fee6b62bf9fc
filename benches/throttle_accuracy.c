/*
 * How closely tokubackup_throttle_backup() holds a backup to its rate:
 * backs up 200 MiB (four files of 50 MiB) at RATE bytes/s and prints the
 * copy time against bytes / rate.
 *
 * Build and run (from the repository root, after cargo build --release):
 *   cc -O2 -Iinclude -o /tmp/throttle_accuracy benches/throttle_accuracy.c -ldl
 *   LD_PRELOAD=$PWD/target/release/libHotBackup.so /tmp/throttle_accuracy 10000000 /tmp/thr
 */
#define _GNU_SOURCE
#include "backup.h"
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int poll_cb(float p, const char *s, void *e) {
    (void)p, (void)s, (void)e;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: throttle_accuracy BYTES_PER_SECOND WORKDIR (with libHotBackup preloaded)\n");
        return 2;
    }
    unsigned long rate = strtoul(argv[1], NULL, 0);
    char src[1024], dst[1024], cmd[4096];
    snprintf(src, sizeof src, "%s/src", argv[2]);
    snprintf(dst, sizeof dst, "%s/dst", argv[2]);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' && mkdir -p '%s' '%s'", src, dst, src, dst);
    if (system(cmd) != 0) return 2;
    /* Found at run time: the program runs only with the library preloaded. */
    int (*create)(const char **, const char **, int, backup_poll_fun_t, void *, backup_error_fun_t, void *,
                  backup_exclude_copy_fun_t, void *, backup_before_stop_capt_fun_t, void *,
                  backup_after_stop_capt_fun_t, void *) = dlsym(RTLD_DEFAULT, "tokubackup_create_backup");
    void (*throttle)(unsigned long) = dlsym(RTLD_DEFAULT, "tokubackup_throttle_backup");
    if (!create || !throttle) {
        fprintf(stderr, "throttle_accuracy: libHotBackup is not preloaded\n");
        return 2;
    }
    char *buf = malloc(1 << 20);
    for (int i = 0; i < (1 << 20); i++) buf[i] = (char)i;
    for (int f = 0; f < 4; f++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/f%d", src, f);
        int fd = open(p, O_CREAT | O_WRONLY, 0644);
        for (int i = 0; i < 50; i++)
            if (write(fd, buf, 1 << 20) != 1 << 20) return 2;
        close(fd);
    }
    throttle(rate);
    const char *s[] = {src}, *d[] = {dst};
    double t0 = now();
    int r = create(s, d, 1, poll_cb, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    double t = now() - t0, expected = 200.0 * (1 << 20) / rate;
    printf("rate %lu B/s: expected %.2f s, took %.2f s, ratio %.3f (backup returned %d)\n", rate, expected, t,
           t / expected, r);
    return r;
}
