/*
 * libHotBackup: hot backup of directories written by a running process.
 *
 * Load the library into the process (LD_PRELOAD=libHotBackup.so.1), then call
 * tokubackup_create_backup() from any thread of that process.  The API is
 * Percona TokuBackup's: programs written against its backup.h work unchanged.
 */
#ifndef HOTBACKUP_BACKUP_H
#define HOTBACKUP_BACKUP_H

#ifdef __cplusplus
/* As in Percona's header, C++ callers may leave out the four stop-capture
 * arguments. */
#define TOKUBACKUP_DEFAULT_NULL = 0
extern "C" {
#else
#define TOKUBACKUP_DEFAULT_NULL
#endif

#define BACKUP_SUCCESS 0

/* Called at least once a second with progress in [0.0, 1.0) and a short text
 * (valid only during the call).  A non-zero return aborts the backup, and
 * tokubackup_create_backup() returns that value. Called on the thread that
 * called tokubackup_create_backup(). */
typedef int (*backup_poll_fun_t)(float progress, const char *progress_string, void *poll_extra);

/* Called with an errno value and a message naming the path and operation that
 * failed (valid only during the call). Called on the thread that called
 * tokubackup_create_backup(). */
typedef void (*backup_error_fun_t)(int error_number, const char *error_string, void *error_extra);

/* Called with the absolute path of each source file before it is copied, and of
 * each file that enters a source directory while the backup runs (from the
 * thread that created or renamed it: it must be thread-safe and must not block).
 * Non-zero means the file is left out of the backup. */
typedef int (*backup_exclude_copy_fun_t)(const char *source_file, void *exclude_extra);

/* Called on the calling thread right before and right after capture stops: the
 * destination is a snapshot of the sources at that instant. */
typedef void (*backup_before_stop_capt_fun_t)(void *extra);
typedef void (*backup_after_stop_capt_fun_t)(void *extra);

/* Copies source_dirs[i] to dest_dirs[i] for i < dir_count and returns when the
 * copy is complete: 0 on success, otherwise an errno value (or the poll
 * function's non-zero return).  Each destination must be an existing empty
 * directory, as for Percona's library: ENOENT if it does not exist, EINVAL if
 * it is not a directory or not empty (error_fun gets the path and the cause).
 * Only one backup runs at a time in a process (EBUSY otherwise).  Every
 * callback may be NULL. */
int tokubackup_create_backup(const char *source_dirs[], const char *dest_dirs[], int dir_count,
                             backup_poll_fun_t poll_fun, void *poll_extra,
                             backup_error_fun_t error_fun, void *error_extra,
                             backup_exclude_copy_fun_t exclude_fun, void *exclude_extra,
                             backup_before_stop_capt_fun_t before_stop_capture
                                 TOKUBACKUP_DEFAULT_NULL,
                             void *bsc_extra TOKUBACKUP_DEFAULT_NULL,
                             backup_after_stop_capt_fun_t after_stop_capture
                                 TOKUBACKUP_DEFAULT_NULL,
                             void *asc_extra TOKUBACKUP_DEFAULT_NULL);

/* Limits how many bytes per second the copier reads from the sources, for the
 * running backup (at once) and later ones.  0 pauses copying while changes keep
 * being captured; ULONG_MAX (the default) means no limit.  Any thread, any time. */
void tokubackup_throttle_backup(unsigned long bytes_per_second);

/* Version of the library, e.g. "1.0.0". */
extern const char *tokubackup_version_string;

#ifdef __cplusplus
}
#endif
#undef TOKUBACKUP_DEFAULT_NULL

#endif /* HOTBACKUP_BACKUP_H */
