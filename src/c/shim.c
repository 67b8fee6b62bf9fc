/*
 * The variadic libc entry points. Stable Rust cannot define C variadic
 * functions, so these read the optional argument the way glibc does and
 * forward to the Rust hooks (hidden symbols, not exported).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>

#define EXPORT __attribute__((visibility("default")))
#define HIDDEN __attribute__((visibility("hidden")))

HIDDEN int hb_open(const char *path, int flags, unsigned mode);
HIDDEN int hb_open64(const char *path, int flags, unsigned mode);
HIDDEN int hb_openat(int dirfd, const char *path, int flags, unsigned mode);
HIDDEN int hb_openat64(int dirfd, const char *path, int flags, unsigned mode);
HIDDEN int hb_fcntl(int fd, int cmd, long arg);
HIDDEN int hb_fcntl64(int fd, int cmd, long arg);

/* The mode argument exists only when the call can create a file. */
#define MODE_ARG(flags, last)                                   \
    unsigned mode = 0;                                          \
    if ((flags) & O_CREAT || ((flags) & O_TMPFILE) == O_TMPFILE) { \
        va_list ap;                                             \
        va_start(ap, last);                                     \
        mode = va_arg(ap, unsigned);                            \
        va_end(ap);                                             \
    }

/* fcntl's third argument is an int or a pointer; glibc reads it as a
 * pointer-sized value, and so do we. */
#define FCNTL_ARG(last)                \
    long arg;                          \
    {                                  \
        va_list ap;                    \
        va_start(ap, last);            \
        arg = (long)va_arg(ap, void *); \
        va_end(ap);                    \
    }

EXPORT int open(const char *path, int flags, ...) { MODE_ARG(flags, flags) return hb_open(path, flags, mode); }
EXPORT int open64(const char *path, int flags, ...) { MODE_ARG(flags, flags) return hb_open64(path, flags, mode); }
EXPORT int openat(int dirfd, const char *path, int flags, ...) { MODE_ARG(flags, flags) return hb_openat(dirfd, path, flags, mode); }
EXPORT int openat64(int dirfd, const char *path, int flags, ...) { MODE_ARG(flags, flags) return hb_openat64(dirfd, path, flags, mode); }
EXPORT int fcntl(int fd, int cmd, ...) { FCNTL_ARG(cmd) return hb_fcntl(fd, cmd, arg); }
EXPORT int fcntl64(int fd, int cmd, ...) { FCNTL_ARG(cmd) return hb_fcntl64(fd, cmd, arg); }

/* The thread's gate slot (see src/gate.rs). Initial-exec TLS: one %fs-relative
 * access (src/gate.rs reads it with inline assembly) instead of a
 * __tls_get_addr call on every hook. Safe here: the library is preloaded, so
 * its TLS block is static. */
#ifdef __x86_64__
HIDDEN __thread unsigned hb_slot_tls __attribute__((tls_model("initial-exec"))) = 0x0FFFFFFFu;
#endif
