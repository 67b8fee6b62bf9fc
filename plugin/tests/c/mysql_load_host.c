/*
 * A stand-in for mysqld loading tokudb_backup.so, with the numbers of one
 * MySQL or Percona Server release (plugin/tests/abi/<release>.txt, measured
 * from that release's headers). It applies the checks of the server's
 * sql_plugin.cc (plugin_dl_add, plugin_add, test_plugin_options) and reads
 * every variable the way the server does, so that it fails where that
 * server would refuse or misread the plugin:
 *
 *   mysql_load_host ABI_FILE PLUGIN_SO SERVER_VERSION
 *
 * SERVER_VERSION names the release played (MYSQL_VERSION_ID is taken from
 * it); the ABI file gives the structures and numbers of its series.
 *
 * It exports what the plugin looks up in the server, under the names of
 * the release: `server_version`, and C or C++-mangled functions (build with
 * -DMYSQL80 for 8.0's mangled mysys names, -DACCESS_BITMASK for 8.0.39's
 * check_global_access, -DNO_CHECK_GLOBAL_ACCESS for a server without it).
 * Exit status 0: the server would load and read the plugin correctly.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char server_version[64];
/* The server's variables the plugin reads its directories from (set from
 * HOST_* environment variables; see backup_scenario). */
char mysql_real_data_home[512];
char pidfile_name[512];
char *mysqld_unix_port;
char *log_bin_basename, *log_bin_index;
char *srv_data_home, *srv_log_group_home_dir, *srv_undo_dir, *srv_innodb_directories;

/* ---- what the plugin looks up in the server ---- */
typedef struct { char unused[64]; } THD;
static THD the_thd;
/* Errors raised on the statement (the server keeps one per statement). */
static int errors_raised;
static int deny_super;
int thd_killed(const void *thd) { (void)thd; return 0; }
char *thd_strmake(void *thd, const char *s, size_t n) { (void)thd; return strndup(s, n); }
/* The text of the statement running (the plugin tells statements apart by
 * it: MySQL exports no query id). -DNO_QUERY_TEXT: a server without it. */
static const char *statement_text = "";
#ifndef NO_QUERY_TEXT
#ifdef MYSQL80
#define THD_QUERY_SAFE _Z14thd_query_safeP3THDPcm
#else
#define THD_QUERY_SAFE thd_query_safe
#endif
size_t THD_QUERY_SAFE(void *thd, char *buf, size_t len) {
    (void)thd;
    size_t n = strlen(statement_text) < len - 1 ? strlen(statement_text) : len - 1;
    memcpy(buf, statement_text, n);
    buf[n] = 0;
    return n;
}
#endif
#ifdef MYSQL80
void _Z8my_erroriiz(int nr, int flags, ...) { errors_raised++; fprintf(stderr, "host: my_error %d %d\n", nr, flags); }
void _Z15my_printf_errorjPKciz(unsigned nr, const char *fmt, int flags, ...) {
    (void)fmt; errors_raised++; fprintf(stderr, "host: my_printf_error %u %d\n", nr, flags);
}
#else
void my_error(int nr, int flags, ...) { errors_raised++; fprintf(stderr, "host: my_error %d %d\n", nr, flags); }
void my_printf_error(unsigned nr, const char *fmt, int flags, ...) {
    (void)fmt; errors_raised++; fprintf(stderr, "host: my_printf_error %u %d\n", nr, flags);
}
#endif
#ifdef MYSQL80
/* 8.0's dynamic privileges: the security context service (C), the plugin
 * registry (C++ names) and its global_grants_check service. */
static int grant_backup_admin;
static char the_ctx;
char thd_get_security_context(void *thd, void **ctx) { (void)thd; *ctx = &the_ctx; return 0; }
static int has_global_grant(void *ctx, const char *priv, size_t len) {
    return ctx == &the_ctx && grant_backup_admin && len == 12 && !memcmp(priv, "BACKUP_ADMIN", 12);
}
static struct { int (*has_global_grant)(void *, const char *, size_t); } grants = {has_global_grant};
static int acquired;
static int reg_acquire(const char *name, void **h) {
    if (strcmp(name, "global_grants_check")) return 1;
    acquired++;
    *h = &grants;
    return 0;
}
static int reg_release(void *h) { (void)h; acquired--; return 0; }
static struct { int (*acquire)(const char *, void **); void *related; int (*release)(void *); } registry = {
    reg_acquire, NULL, reg_release};
void *_Z29mysql_plugin_registry_acquirev(void) { acquired++; return &registry; }
int _Z29mysql_plugin_registry_releasePK16s_mysql_registry(void *r) { (void)r; acquired--; return 0; }
#endif
#ifndef NO_CHECK_GLOBAL_ACCESS
#ifdef ACCESS_BITMASK
#define CGA_ARG uint32_t
#define CGA _Z19check_global_accessP3THDj
#else
#define CGA_ARG unsigned long
#define CGA _Z19check_global_accessP3THDm
#endif
/* As the server's: on denial it raises ER_SPECIFIC_ACCESS_DENIED_ERROR. */
_Bool CGA(THD *thd, CGA_ARG want) {
    (void)thd;
    if (want != 1UL << 15) fprintf(stderr, "host: check_global_access asked for 0x%lx, not SUPER\n", (unsigned long)want);
    if (deny_super || want != 1UL << 15) errors_raised++;
    return deny_super || want != 1UL << 15;
}
#endif

/* ---- the release's numbers ---- */
static char keys[256][64];
static long vals[256];
static int nkeys;

static long num(const char *key) {
    for (int i = 0; i < nkeys; i++)
        if (!strcmp(keys[i], key)) return vals[i];
    fprintf(stderr, "host: the ABI file has no '%s'\n", key);
    exit(2);
}

static int has(const char *key) {
    for (int i = 0; i < nkeys; i++)
        if (!strcmp(keys[i], key)) return 1;
    return 0;
}

static int failures;
#define FAIL(...) do { fprintf(stderr, "REFUSED: " __VA_ARGS__); fputc('\n', stderr); failures++; } while (0)

#define AT(base, type, key) (*(type *)((char *)(base) + num(key)))

/* The server's resolve for session variables: offset into its block. */
static char session_block[4096] __attribute__((aligned(16)));
static void *resolve(void *thd, int offset) { (void)thd; return session_block + offset; }

static int initialized;
static void *var_dir, *var_last_error, *var_last_error_string, *var_exclude;

static void check_sysvar(void *v) {
    int flags = *(int *)v;
    const char *name = AT(v, const char *, "thdvar_str.name");
    if (!strcmp(name, "dir")) var_dir = v;
    if (!strcmp(name, "last_error")) var_last_error = v;
    if (!strcmp(name, "last_error_string")) var_last_error_string = v;
    if (!strcmp(name, "exclude")) var_exclude = v;
    long mask = num("PLUGIN_VAR_MASK") | 0x7f | num("PLUGIN_VAR_UNSIGNED") | num("PLUGIN_VAR_THDLOCAL");
    if (flags & ~mask) FAIL("variable %s: flags 0x%x outside the server's PLUGIN_VAR_MASK", name, flags);
    int type = flags & 0x7f;
    int thd = flags & num("PLUGIN_VAR_THDLOCAL");
    const char *kind = type == num("PLUGIN_VAR_STR") ? "str"
                       : type == num("PLUGIN_VAR_LONG") ? "ulong"
                       : type == num("PLUGIN_VAR_LONGLONG") ? "ulonglong" : NULL;
    if (!kind) { FAIL("variable %s: unknown type code 0x%x", name, type); return; }
    char k[64];
    if (thd) {
        /* The server assigns the offset and resolve function. */
        snprintf(k, sizeof k, "thdvar_%s.offset", kind);
        static int next = 0;
        *(int *)((char *)v + num(k)) = next;
        next += 16;
        snprintf(k, sizeof k, "thdvar_%s.resolve", kind);
        *(void **)((char *)v + num(k)) = (void *)resolve;
        /* A new session starts with the default values. */
        snprintf(k, sizeof k, "thdvar_%s.def_val", kind);
        memcpy(session_block + next - 16, (char *)v + num(k), 8);
    } else if (type == num("PLUGIN_VAR_STR") && initialized) {
        char **value = AT(v, char **, "sysvar_str.value");
        printf("  @@tokudb_backup_%s = '%s'\n", name, value && *value ? *value : "");
    }
    if (type != num("PLUGIN_VAR_STR") && thd) {
        snprintf(k, sizeof k, "thdvar_%s.def_val", kind);
        unsigned long long def = *(unsigned long long *)((char *)v + num(k));
        snprintf(k, sizeof k, "thdvar_%s.min_val", kind);
        unsigned long long min = *(unsigned long long *)((char *)v + num(k));
        snprintf(k, sizeof k, "thdvar_%s.max_val", kind);
        unsigned long long max = *(unsigned long long *)((char *)v + num(k));
        if (def < min || def > max) FAIL("variable %s: default %llu outside [%llu, %llu]", name, def, min, max);
    }
    if (type == num("PLUGIN_VAR_STR") && thd && (flags & num("PLUGIN_VAR_MEMALLOC")) &&
        !(flags & num("PLUGIN_VAR_READONLY")) && !AT(v, void *, "thdvar_str.check"))
        printf("  note: %s is set by the server's own update\n", name);
    if (!initialized) printf("  variable %s flags 0x%x (%s%s)\n", name, flags, thd ? "session " : "global ", kind);
}

typedef int (*show_func)(void *thd, void *var, char *buff);
typedef int (*init_func)(void *);

static void check_status(void *vars) {
    long size = num("sizeof.show_var");
    long buff_size = num("SHOW_VAR_FUNC_BUFF_SIZE");
    int n = 0;
    for (char *v = vars; AT(v, const char *, "show_var.name"); v += size, n++) {
        const char *name = AT(v, const char *, "show_var.name");
        int type = AT(v, int, "show_var.type");
        if (AT(v, int, "show_var.scope") != num("SHOW_SCOPE_GLOBAL"))
            FAIL("status %s: scope %d is not SHOW_SCOPE_GLOBAL", name, AT(v, int, "show_var.scope"));
        if (type != num("SHOW_FUNC")) {
            FAIL("status %s: type %d, this server's SHOW_FUNC is %ld: it would print the function's code",
                 name, type, num("SHOW_FUNC"));
            continue;
        }
        /* As show_status_array(): call into a copy with the server's buffer. */
        char tmp[256];
        memcpy(tmp, v, size);
        char *buff = malloc(buff_size + 64);
        memset(buff, 0x5a, buff_size + 64);
        while (AT(tmp, int, "show_var.type") == num("SHOW_FUNC"))
            ((show_func)AT(tmp, void *, "show_var.value"))(&the_thd, tmp, buff);
        for (int i = 0; i < 64; i++)
            if (buff[buff_size + i] != 0x5a) { FAIL("status %s: wrote past the %ld-byte buffer", name, buff_size); break; }
        if (AT(tmp, int, "show_var.type") != num("SHOW_CHAR"))
            FAIL("status %s: answered type %d, this server's SHOW_CHAR is %ld", name, AT(tmp, int, "show_var.type"), num("SHOW_CHAR"));
        else if (AT(tmp, char *, "show_var.value") != buff || strnlen(buff, buff_size) == (size_t)buff_size)
            FAIL("status %s: value not a string in the server's buffer", name);
        else
            printf("  %s = '%s'\n", name, buff);
        free(buff);
    }
    if (n == 0) FAIL("no status variables");
}


/* ---- the srv_session and command services (SQL inside the server) ----
 * As plugin_dl_add binds them: the plugin exports a pointer named after
 * each service holding the version it was built for; the server checks it
 * and stores its service structure there. run_command answers the
 * plugin's query of the tablespace files with HOST_SQL_TABLESPACES
 * (paths separated by ':'), through the callbacks in the order the
 * server calls them, if the session runs as the SET's account (security
 * context and srv_session_info services); HOST_SQL_ERROR makes it fail as
 * a refused query does, HOST_SQL_NO_SESSION makes open_session fail,
 * HOST_NO_ACCOUNT the account lookup. */
static int sessions_open, sessions_opened, queries_run;
/* The account the open session runs as (none until security_context_lookup). */
static const char *session_account;
static char the_session;
typedef void (*session_error_cb)(void *ctx, unsigned sql_errno, const char *msg);
static void *open_session(session_error_cb cb, void *ctx) {
    if (getenv("HOST_SQL_NO_SESSION")) { cb(ctx, 1040, "Too many connections"); return NULL; }
    sessions_open++;
    sessions_opened++;
    session_account = NULL;
    return &the_session;
}
static int close_session(void *s) {
    if (s != &the_session || sessions_open <= 0) FAIL("close_session of a session that is not open");
    else sessions_open--;
    return 0;
}
static int server_is_available(void) { return 1; }
static void not_called(void) { FAIL("the plugin called a service function it does not need"); }
static char *srv_session_handler, *command_handler, *security_context_handler, *srv_session_info_handler;

/* Security contexts: the SET's (the invoking account) and the server
 * session's, which starts with none; security_context_lookup gives it an
 * account. run_command refuses the query unless the session runs as the
 * invoker (as INFORMATION_SCHEMA.FILES may need PROCESS). */
static THD session_thd;
static char invoker_ctx, session_ctx;
static char sc_get(void *thd, void **ctx) {
    if (thd == &the_thd) *ctx = &invoker_ctx;
    else if (thd == &session_thd && sessions_open) *ctx = &session_ctx;
    else { FAIL("thd_get_security_context of an unknown THD"); return 1; }
    return 0;
}
struct lex_cstring { const char *str; size_t length; };
static char sc_get_option(void *ctx, const char *name, void *out) {
    struct lex_cstring *v = out;
    if (ctx != &invoker_ctx) { FAIL("security_context_get_option of a context other than the SET's"); return 1; }
    if (!strcmp(name, "priv_user")) { v->str = "backup_admin"; v->length = 12; return 0; }
    if (!strcmp(name, "priv_host")) { v->str = "localhost"; v->length = 9; return 0; }
    FAIL("security_context_get_option(%s)", name);
    return 1;
}
static char sc_lookup(void *ctx, const char *user, const char *host, const char *ip, const char *db) {
    (void)ip; (void)db;
    if (ctx != &session_ctx) { FAIL("security_context_lookup on a context other than the session's"); return 1; }
    /* HOST_NO_ACCOUNT: the invoker's account is gone (DROP USER meanwhile). */
    if (getenv("HOST_NO_ACCOUNT") || strcmp(user, "backup_admin") || strcmp(host, "localhost")) return 1;
    session_account = "backup_admin@localhost";
    return 0;
}
static void *session_info_get_thd(void *session) {
    if (session != &the_session || !sessions_open) { FAIL("srv_session_info_get_thd of a session that is not open"); return NULL; }
    return &session_thd;
}

#define CB(name) AT(cbs, void *, "st_command_service_cbs." #name)
typedef int (*start_md_f)(void *, unsigned, unsigned, const void *);
typedef int (*field_md_f)(void *, void *, const void *);
typedef int (*end_md_f)(void *, unsigned, unsigned);
typedef int (*ctx_f)(void *);
typedef int (*get_string_f)(void *, const char *, size_t, const void *);
typedef void (*ok_f)(void *, unsigned, unsigned, unsigned long long, unsigned long long, const char *);
typedef void (*error_f)(void *, unsigned, const char *, const char *);

static const char *cb_names[] = {"start_result_metadata", "field_metadata", "end_result_metadata", "start_row",
    "end_row", "abort_row", "get_client_capabilities", "get_null", "get_integer", "get_longlong", "get_decimal",
    "get_double", "get_date", "get_time", "get_datetime", "get_string", "handle_ok", "handle_error", "shutdown"};

static int run_command(void *session, int command, const char *data, const void *cs, const char *cbs,
                       int text_or_binary, void *ctx) {
    queries_run++;
    if (session != &the_session || sessions_open <= 0) { FAIL("run_command on a session that is not open"); return 1; }
    if (command != num("COM_QUERY")) { FAIL("run_command: command %d is not COM_QUERY", command); return 1; }
    if (text_or_binary != num("CS_TEXT_REPRESENTATION")) FAIL("run_command: not the text representation");
    char k[80];
    for (size_t i = 0; i < sizeof cb_names / sizeof *cb_names; i++) {
        snprintf(k, sizeof k, "st_command_service_cbs.%s", cb_names[i]);
        if (!AT(cbs, void *, k)) FAIL("run_command: callback %s is NULL", cb_names[i]);
    }
    const char *q = AT(data, const char *, "COM_QUERY_DATA.query");
    unsigned len = AT(data, unsigned, "COM_QUERY_DATA.length");
    if (has("COM_QUERY_DATA.parameters") && (AT(data, void *, "COM_QUERY_DATA.parameters") || AT(data, unsigned long, "COM_QUERY_DATA.parameter_count")))
        FAIL("run_command: COM_QUERY with query attributes the plugin did not set");
    printf("  SQL: %.*s\n", (int)len, q);
    if (!session_account || getenv("HOST_SQL_ERROR") || !memmem(q, len, "INFORMATION_SCHEMA.FILES", 24)) {
        ((error_f)CB(handle_error))(ctx, 1227, "Access denied; you need (at least one of) the PROCESS privilege(s) for this operation", "42000");
        return 0; /* the command ran; its outcome is the error */
    }
    if (((start_md_f)CB(start_result_metadata))(ctx, 1, 0, cs)) return 1;
    char field[256] = {0};
    AT(field, const char *, "st_send_field.col_name") = "FILE_NAME";
    if (((field_md_f)CB(field_metadata))(ctx, field, cs)) return 1;
    if (((end_md_f)CB(end_result_metadata))(ctx, 0, 0)) return 1;
    char paths[2048];
    snprintf(paths, sizeof paths, "%s", getenv("HOST_SQL_TABLESPACES") ? getenv("HOST_SQL_TABLESPACES") : "");
    for (char *save, *p = strtok_r(paths, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
        if (((ctx_f)CB(start_row))(ctx)) return 1;
        if (((get_string_f)CB(get_string))(ctx, p, strlen(p), cs)) return 1;
        if (((ctx_f)CB(end_row))(ctx)) return 1;
    }
    ((ok_f)CB(handle_ok))(ctx, 0, 0, 0, 0, "");
    return 0;
}

/* Binds the plugin's service pointers as plugin_dl_add does. */
static int bind_services(void *h) {
    srv_session_handler = calloc(1, num("sizeof.srv_session_service_st"));
    for (long off = 0; off < num("sizeof.srv_session_service_st"); off += sizeof(void *))
        *(void **)(srv_session_handler + off) = (void *)not_called;
    AT(srv_session_handler, void *, "srv_session_service_st.open_session") = (void *)open_session;
    AT(srv_session_handler, void *, "srv_session_service_st.close_session") = (void *)close_session;
    AT(srv_session_handler, void *, "srv_session_service_st.server_is_available") = (void *)server_is_available;
    command_handler = calloc(1, num("sizeof.command_service_st"));
    AT(command_handler, void *, "command_service_st.run_command") = (void *)run_command;
    security_context_handler = calloc(1, num("sizeof.security_context_service_st"));
    for (long off = 0; off < num("sizeof.security_context_service_st"); off += sizeof(void *))
        *(void **)(security_context_handler + off) = (void *)not_called;
    AT(security_context_handler, void *, "security_context_service_st.thd_get_security_context") = (void *)sc_get;
    AT(security_context_handler, void *, "security_context_service_st.security_context_lookup") = (void *)sc_lookup;
    AT(security_context_handler, void *, "security_context_service_st.security_context_get_option") = (void *)sc_get_option;
    srv_session_info_handler = calloc(1, num("sizeof.srv_session_info_service_st"));
    for (long off = 0; off < num("sizeof.srv_session_info_service_st"); off += sizeof(void *))
        *(void **)(srv_session_info_handler + off) = (void *)not_called;
    AT(srv_session_info_handler, void *, "srv_session_info_service_st.get_thd") = (void *)session_info_get_thd;
    struct { const char *name; long version; void *service; } services[] = {
        {"srv_session_service", num("VERSION_srv_session_service"), srv_session_handler},
        {"command_service", num("VERSION_command"), command_handler},
        {"security_context_service", num("VERSION_security_context_service"), security_context_handler},
        {"srv_session_info_service", num("VERSION_srv_session_info_service"), srv_session_info_handler},
    };
    for (size_t i = 0; i < sizeof services / sizeof *services; i++) {
        void **sym = dlsym(h, services[i].name);
        if (!sym) { printf("  service %s: not used by the plugin\n", services[i].name); continue; }
        long ver = (long)(intptr_t)*sym;
        if (ver > services[i].version || (ver >> 8) < (services[i].version >> 8)) {
            FAIL("Can't open shared library: service '%s' interface version mismatch (0x%lx, server 0x%lx)",
                 services[i].name, ver, services[i].version);
            return 1;
        }
        *sym = services[i].service;
    }
    return 0;
}

/* st_mysql_value holding one string, as the server passes a SET value. */
struct value { int (*value_type)(struct value *); const char *(*val_str)(struct value *, char *, int *);
               int (*val_real)(struct value *, double *); int (*val_int)(struct value *, long long *);
               int (*is_unsigned)(struct value *); };
static const char *set_to;
static int value_type(struct value *v) { (void)v; return 0; }
static const char *val_str(struct value *v, char *buf, int *len) { (void)v; (void)buf; *len = strlen(set_to); return set_to; }

typedef int (*check_func)(void *thd, void *var, void *save, struct value *value);

/* The check of session string variable VAR for VALUE, as the server runs
 * it for one variable of a SET. */
static int check_str(void *var, const char *value) {
    struct value v = {value_type, val_str, NULL, NULL, NULL};
    set_to = value;
    char save[64];
    return AT(var, check_func, "thdvar_str.check")(&the_thd, var, save, &v);
}

/* SET tokudb_backup_dir = DEST as the server runs it: the check, then
 * (on success) the update. Returns the check's result. */
static int set_dir(const char *dest) {
    static char text[700];
    snprintf(text, sizeof text, "SET tokudb_backup_dir='%s'", dest);
    statement_text = text;
    errors_raised = 0;
    return check_str(var_dir, dest);
}

/* HOST_EXCLUDE: SET tokudb_backup_exclude=..., tokudb_backup_dir=... in
 * one statement (every check before any update). HOST_STALE_EXCLUDE: a
 * statement that checks the exclude and then fails on another variable
 * (no update), before a SET of the directory alone. */
static int set_dir_with_exclude(const char *dest) {
    static char text[1400];
    const char *ex = getenv("HOST_EXCLUDE"), *stale = getenv("HOST_STALE_EXCLUDE");
    if (stale) {
        snprintf(text, sizeof text, "SET tokudb_backup_exclude='%s', sql_mode='no such mode'", stale);
        statement_text = text;
        if (check_str(var_exclude, stale) != 0) FAIL("tokudb_backup_exclude='%s' refused", stale);
        printf("  %s: fails after the exclude's check\n", text);
    }
    if (!ex) return set_dir(dest);
    snprintf(text, sizeof text, "SET tokudb_backup_exclude='%s', tokudb_backup_dir='%s'", ex, dest);
    statement_text = text;
    errors_raised = 0;
    printf("  %s\n", text);
    if (check_str(var_exclude, ex) != 0) { FAIL("tokudb_backup_exclude='%s' refused", ex); return 1; }
    return check_str(var_dir, dest);
}

static void *session(void *var, const char *kind);

/* ---- a MySQL binary log, event by event ---- */
static unsigned char binlog[4096];
static size_t binlog_len;

static void put(const void *p, size_t n) { memcpy(binlog + binlog_len, p, n); binlog_len += n; }
static void event(int type, const void *body, size_t n) {
    unsigned char h[19] = {0};
    uint32_t len = 19 + n, next = binlog_len + len, server = 1;
    h[4] = type;
    memcpy(h + 5, &server, 4);
    memcpy(h + 9, &len, 4);
    memcpy(h + 13, &next, 4);
    put(h, 19);
    put(body, n);
}
static void query(const char *q) {
    unsigned char b[256] = {0};
    b[8] = 1; /* db_len */
    memcpy(b + 13, "d", 2);
    memcpy(b + 15, q, strlen(q));
    event(2, b, 15 + strlen(q));
}
static const unsigned char sid[16] = {0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62};
static void gtid(uint64_t gno) {
    unsigned char b[42] = {1};
    memcpy(b + 1, sid, 16);
    memcpy(b + 17, &gno, 8);
    b[25] = 2;
    event(33, b, sizeof b);
}

/* Writes DIR/binlog.000001 and its index as mysqld would: transactions 1-5
 * before the file (Previous_gtids), 6 complete, 7 cut after its rows.
 * Returns the end of transaction 6. */
static size_t write_binlog(const char *dir) {
    unsigned char fde[2 + 50 + 4 + 1 + 40 + 1 + 4] = {4};
    memcpy(fde + 2, server_version, strlen(server_version) < 50 ? strlen(server_version) : 49);
    fde[56] = 19;
    binlog_len = 0;
    put("\xfe" "bin", 4);
    event(15, fde, sizeof fde);
    unsigned char prev[8 + 16 + 8 + 16] = {1};
    uint64_t n = 1, start = 1, end = 6;
    memcpy(prev + 8, sid, 16);
    memcpy(prev + 24, &n, 8);
    memcpy(prev + 32, &start, 8);
    memcpy(prev + 40, &end, 8);
    event(35, prev, sizeof prev);
    gtid(6);
    query("BEGIN");
    unsigned char rows[40] = {0};
    event(30, rows, sizeof rows);
    event(16, rows, 8); /* XID */
    size_t safe = binlog_len;
    gtid(7);
    query("BEGIN");
    event(30, rows, sizeof rows);
    char path[600];
    snprintf(path, sizeof path, "%s/binlog.000001", dir);
    FILE *f = fopen(path, "wb");
    fwrite(binlog, 1, binlog_len, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/binlog.index", dir);
    f = fopen(path, "w");
    fprintf(f, "./binlog.000001\n");
    fclose(f);
    return safe;
}

/* HOST_BACKUP_TO set (and libHotBackup preloaded): SET tokudb_backup_dir
 * runs a whole backup of the directories the HOST_* variables name, as it
 * would in this server; the caller checks the copy. */
static void backup_scenario(const char *to) {
    static char bin_base[600], bin_index[600];
    const char *bin = getenv("HOST_BINLOG_DIR");
    if (bin) {
        size_t safe = write_binlog(bin);
        snprintf(bin_base, sizeof bin_base, "%s/binlog", bin);
        snprintf(bin_index, sizeof bin_index, "%s/binlog.index", bin);
        log_bin_basename = bin_base;
        log_bin_index = bin_index;
        printf("  binlog: transaction 6 ends at %zu, 7 is cut\n", safe);
    }
    deny_super = 0;
    int rc = set_dir_with_exclude(to);
    const char *msg = *(char **)session(var_last_error_string, "str");
    if (rc != 0 || errors_raised != 0)
        FAIL("SET tokudb_backup_dir='%s' failed (%d errors): %s", to, errors_raised, msg ? msg : "");
    else
        printf("  SET tokudb_backup_dir='%s': backup complete\n", to);
    if (sessions_open != 0) FAIL("the plugin left %d server session(s) open", sessions_open);
    if (!getenv("HOST_SQL_NO_SESSION") && !getenv("HOST_NO_ACCOUNT") && (sessions_opened == 0 || queries_run == 0))
        FAIL("the plugin ran no SQL (%d sessions, %d queries)", sessions_opened, queries_run);
    printf("  SQL: %d session(s) opened and closed, %d queries\n", sessions_opened, queries_run);
}

static void *session(void *var, const char *kind) {
    char k[64];
    snprintf(k, sizeof k, "thdvar_%s.offset", kind);
    return session_block + *(int *)((char *)var + num(k));
}

/* A refused and a failed SET tokudb_backup_dir: one error each for the
 * client, and the session's last_error / last_error_string set (written by
 * the plugin into the server's session storage). */
static void check_set(void) {
    if (num("sizeof.st_mysql_value") != (long)sizeof(struct value)) { FAIL("st_mysql_value layout"); return; }
    if (!var_dir || !var_last_error || !var_last_error_string) { FAIL("session variables missing"); return; }
    if (getenv("HOST_BACKUP_TO")) { backup_scenario(getenv("HOST_BACKUP_TO")); return; }
    deny_super = 1;
    if (set_dir("/nonexistent/backup") == 0) FAIL("SET tokudb_backup_dir succeeded without SUPER");
    if (errors_raised != 1) FAIL("a refused SET raised %d errors, the server shows one", errors_raised);
    if (*(unsigned long *)session(var_last_error, "ulong") != 13) FAIL("last_error after a refused SET is not EACCES");
    deny_super = 0;
    for (int i = 0; i < 3; i++) {
        if (set_dir("/nonexistent/backup") == 0) FAIL("SET tokudb_backup_dir succeeded without libHotBackup");
        if (errors_raised != 1) FAIL("a failed SET raised %d errors, the server shows one", errors_raised);
    }
    /* The plugin stored into last_error_string: MySQL keeps MEMALLOC values
     * behind a hidden header (plugin_var_memalloc_session_update) that only
     * the server may write and free. */
    if (*(int *)var_last_error_string & num("PLUGIN_VAR_MEMALLOC"))
        FAIL("the plugin writes last_error_string, which is PLUGIN_VAR_MEMALLOC: heap corruption in this server");
#ifdef MYSQL80
    /* BACKUP_ADMIN without SUPER: past the privilege check, no error of it. */
    deny_super = 1;
    grant_backup_admin = 1;
    if (set_dir("/nonexistent/backup") == 0) FAIL("SET tokudb_backup_dir succeeded without libHotBackup");
    if (errors_raised != 1) FAIL("a SET with BACKUP_ADMIN raised %d errors, expected the backup's one", errors_raised);
    if (*(unsigned long *)session(var_last_error, "ulong") != 38) FAIL("BACKUP_ADMIN is not accepted for SET tokudb_backup_dir");
    if (acquired != 0) FAIL("the plugin holds %d registry references after the SET", acquired);
    deny_super = grant_backup_admin = 0;
#endif
    const char *msg = *(char **)session(var_last_error_string, "str");
    if (!msg || !strstr(msg, "libHotBackup is not loaded"))
        FAIL("last_error_string is '%s'", msg ? msg : "(null)");
    else
        printf("  SET tokudb_backup_dir: refused without SUPER, failed without the library: '%.40s...'\n", msg);
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s ABI_FILE PLUGIN_SO SERVER_VERSION\n", argv[0]); return 2; }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 2; }
    while (nkeys < 256 && fscanf(f, "%63s %ld", keys[nkeys], &vals[nkeys]) == 2) nkeys++;
    fclose(f);
    snprintf(server_version, sizeof server_version, "%s", argv[3]);
    if (getenv("HOST_DATADIR")) snprintf(mysql_real_data_home, sizeof mysql_real_data_home, "%s", getenv("HOST_DATADIR"));
    srv_undo_dir = getenv("HOST_UNDO_DIR");
    srv_innodb_directories = getenv("HOST_INNODB_DIRECTORIES");
    /* The release the host plays: the one server_version names (the ABI
     * file's structures are those of its whole series). */
    long version_id = num("MYSQL_VERSION_ID");
    int x, y, z;
    if (sscanf(server_version, "%d.%d.%d", &x, &y, &z) == 3) version_id = x * 10000L + y * 100 + z;
    long piv = num("MYSQL_PLUGIN_INTERFACE_VERSION");

    void *h = dlopen(argv[2], RTLD_NOW);
    if (!h) { FAIL("cannot open library: %s", dlerror()); return 1; }
    if (bind_services(h)) return 1;
    int *ver = dlsym(h, "_mysql_plugin_interface_version_");
    if (!ver) { FAIL("no _mysql_plugin_interface_version_"); return 1; }
    if (*ver < (piv & ~0xff) || (*ver >> 8) > (piv >> 8)) { FAIL("plugin interface version mismatch (0x%x, server 0x%lx)", *ver, piv); return 1; }
    char *decls = dlsym(h, "_mysql_plugin_declarations_");
    if (!decls) { FAIL("no _mysql_plugin_declarations_"); return 1; }
    long stride = num("sizeof.st_mysql_plugin");
    if (*ver != piv) {
        int *sz = dlsym(h, "_mysql_sizeof_struct_st_plugin_");
        if (!sz) { FAIL("no _mysql_sizeof_struct_st_plugin_"); return 1; }
        /* The server copies min(its size, this) bytes of each declaration. */
        if (*sz != stride) FAIL("sizeof(st_mysql_plugin) is %d, the server's %ld", *sz, stride);
        stride = *sz;
    }
    int n = 0;
    for (char *d = decls; AT(d, void *, "st_mysql_plugin.info"); d += stride, n++) {
        const char *name = AT(d, const char *, "st_mysql_plugin.name");
        printf("plugin %s (server %s, MYSQL_VERSION_ID %ld)\n", name, server_version, version_id);
        if (AT(d, int, "st_mysql_plugin.type") != num("MYSQL_DAEMON_PLUGIN")) FAIL("%s: not a daemon plugin", name);
        if (AT(d, int, "st_mysql_plugin.license") != num("PLUGIN_LICENSE_GPL")) FAIL("%s: license", name);
        int iv = *AT(d, int *, "st_mysql_plugin.info");
        if (iv < (version_id << 8) || (iv >> 8) > version_id)
            FAIL("API version for DAEMON plugin %s not supported by this version of the server (0x%x, need 0x%lx)", name, iv, version_id << 8);
        if (num("sizeof.st_mysql_plugin") > num("st_mysql_plugin.flags") && AT(d, unsigned long, "st_mysql_plugin.flags") & ~3UL)
            FAIL("%s: unknown flags", name);
        void **sysvars = AT(d, void **, "st_mysql_plugin.system_vars");
        for (; sysvars && *sysvars; sysvars++) check_sysvar(*sysvars);
        init_func init = AT(d, init_func, "st_mysql_plugin.init");
        if (!init || init(d) != 0) FAIL("Plugin '%s' init function returned error.", name);
        else {
            initialized = 1;
            check_set();
            check_status(AT(d, void *, "st_mysql_plugin.status_vars"));
            for (sysvars = AT(d, void **, "st_mysql_plugin.system_vars"); *sysvars; sysvars++)
                if (!(*(int *)*sysvars & num("PLUGIN_VAR_THDLOCAL"))) check_sysvar(*sysvars);
            init_func deinit = AT(d, init_func, "st_mysql_plugin.deinit");
            if (deinit) deinit(d);
        }
    }
    if (n != 1) FAIL("%d declarations, expected 1", n);
    printf(failures ? "would NOT load: %d problem(s)\n" : "loads and reads correctly\n", failures);
    return failures ? 1 : 0;
}
