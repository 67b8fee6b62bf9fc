//! MySQL's plugin services are not exported functions: the plugin exports
//! one pointer per service, named after it, holding the service version it
//! was written for; when it loads the plugin, the server checks the version
//! (same major, minor not above its own) and replaces the pointer with its
//! service structure (sql_plugin.cc, plugin_dl_add).

use crate::abi::ServerShared;

/// The service structure the server bound to `slot`, None while it still
/// holds the version number (a host that binds no services).
pub fn bound<T>(slot: &ServerShared<*const T>) -> Option<&'static T> {
    // SAFETY: the server writes the slot while loading the plugin, before
    // any of its code runs; afterwards it is only read.
    let p = unsafe { *slot.get() };
    // SAFETY: past the version numbers the slot points at the server's
    // static service structure, alive for the process.
    (p as usize > 0xffff).then(|| unsafe { &*p })
}
