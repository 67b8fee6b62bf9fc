//! Values checked earlier in the statement that runs on this thread.
//!
//! The server runs every check of a SET before any update, so in
//! `SET tokudb_backup_exclude='x', tokudb_backup_dir='/b'` the backup (run
//! by the check of dir) must take 'x' from here: the session variable gets
//! it only after the backup.
//!
//! What was checked belongs to one statement ([`Statement`]). MariaDB gives
//! every statement its own query id. MySQL 5.7 and 8.0 export none, so
//! there the statement is known by its text, and the values are dropped
//! once a backup has used them: what a statement checked reaches a later
//! one only if that one has the same text, comes after a statement that
//! failed (a successful one stores the values in the session, where the
//! backup reads the same ones) and sets tokudb_backup_dir before them.

use crate::abi::Thd;
use crate::server::{self, Statement};
use std::cell::RefCell;

/// What a statement checked.
#[derive(Clone, Default)]
pub struct Pending {
    pub exclude: Option<Option<String>>,
    pub throttle: Option<u64>,
}

thread_local! {
    /// (THD, statement) and what that statement checked.
    static PENDING: RefCell<Option<(usize, Statement, Pending)>> = const { RefCell::new(None) };
}

/// Records a value checked by the statement `thd` runs now.
pub fn set(thd: Thd, f: impl FnOnce(&mut Pending)) {
    let Some(now) = server::get().statement(thd) else {
        return;
    };
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match p.as_mut() {
            Some((t, s, values)) if *t == thd as usize && *s == now => f(values),
            _ => {
                let mut values = Pending::default();
                f(&mut values);
                *p = Some((thd as usize, now, values));
            }
        }
    });
}

/// What the statement `thd` runs now has checked so far.
pub fn get(thd: Thd) -> Pending {
    let Some(now) = server::get().statement(thd) else {
        return Pending::default();
    };
    PENDING.with(|p| match &*p.borrow() {
        Some((t, s, values)) if *t == thd as usize && *s == now => values.clone(),
        _ => Pending::default(),
    })
}

/// A backup took the values: where statements are known by their text,
/// forget them, so that the same text run again does not find them.
pub fn used(thd: Thd) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if matches!(&*p, Some((t, Statement::Text(_), _)) if *t == thd as usize) {
            *p = None;
        }
    });
}
