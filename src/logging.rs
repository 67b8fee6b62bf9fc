//! One line per backup event in the system log (facility daemon), for the
//! DBA who looks there. Logging never runs in an interposed call, only on the
//! thread that runs a backup.

use std::sync::Once;

static INIT: Once = Once::new();

fn init() {
    INIT.call_once(|| {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "libHotBackup".into(),
            // SAFETY: getpid has no preconditions.
            pid: unsafe { libc::getpid() } as u32,
        };
        // No syslog socket (a container): messages still reach the caller
        // through its error callback.
        if let Ok(logger) = syslog::unix(formatter) {
            if log::set_boxed_logger(Box::new(syslog::BasicLogger::new(logger))).is_ok() {
                log::set_max_level(log::LevelFilter::Info);
            }
        }
    });
}

pub fn info(msg: &str) {
    init();
    log::info!("{msg}");
}

pub fn error(msg: &str) {
    init();
    log::error!("{msg}");
}
