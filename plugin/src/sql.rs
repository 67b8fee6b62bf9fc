//! SQL inside the server, for what only SQL answers (settings, the paths of
//! tablespaces created with DATA DIRECTORY): `Local::open` opens an
//! internal session, `query` returns every row of a statement (NULL as
//! None), and the session closes on drop.
//!
//! MariaDB offers its SQL service (`sql_service_handler`); MySQL and
//! Percona Server 5.7 and 8.0 the srv_session and command services, bound
//! to the plugin by the server when it loads it (`mysql`).

#[cfg(feature = "mariadb")]
mod mariadb;
#[cfg(feature = "mariadb")]
pub use mariadb::Local;

#[cfg(not(feature = "mariadb"))]
mod invoker;
#[cfg(not(feature = "mariadb"))]
pub mod mysql;
#[cfg(not(feature = "mariadb"))]
mod service;
#[cfg(not(feature = "mariadb"))]
pub use mysql::Local;

/// Rows of a result set, each value as text or None for NULL.
pub type Rows = Vec<Vec<Option<String>>>;
