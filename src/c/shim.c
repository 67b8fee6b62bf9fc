#include <stdarg.h>
#include <fcntl.h>
extern int hb_open(const char*, int, mode_t);
__attribute__((visibility("default"))) int open(const char *p, int f, ...) { mode_t m=0; if (f & (O_CREAT|__O_TMPFILE)) { va_list ap; va_start(ap,f); m=va_arg(ap, mode_t); va_end(ap);} return hb_open(p,f,m); }
