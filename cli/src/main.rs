//! tokubackup: the operator's command for tokudb_backup hot backups.
//! `backup` drives the plugin over SQL; `verify`, `restore`, `info` and
//! `replica-sql` work on a backup directory; `push`, `list`, `expire` and
//! the REPO:ID forms of `restore` and `verify` on a repository. Exit statuses: `error::Exit`.

#![deny(clippy::undocumented_unsafe_blocks)]

mod args;
mod backup;
mod copy;
mod docs;
mod error;
mod guard;
mod info;
mod manifest;
mod mariadb;
mod options;
mod password;
mod progress;
mod recover;
mod replica;
mod repository;
mod restore;
mod signals;
mod verify;

use clap::Parser;

fn main() {
    let cli = match args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                error::Exit::Usage as i32
            } else {
                0
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // The backup's guard is forked before any thread exists.
    let guard = match &cli.command {
        args::Command::Backup(a) => {
            Some(backup::connect_options(&a.conn).and_then(|o| guard::start(&o).map(|g| (o, g))))
        }
        _ => None,
    };
    signals::install();
    let r = match &cli.command {
        args::Command::Backup(a) => match guard {
            Some(Ok((opts, g))) => backup::run(a, &opts, g),
            Some(Err(e)) => Err(e),
            None => unreachable!("a backup always has its guard"),
        },
        args::Command::Verify(a) => match repository::parse_ref(&a.backup) {
            Some(r) => repository::verify(&r, a),
            None => verify::run(a),
        },
        args::Command::Restore(a) => match repository::parse_ref(&a.backup) {
            Some(r) => repository::restore(&r, a),
            None => restore::run(a),
        },
        args::Command::Push(a) => repository::run_push(a),
        args::Command::List(a) => repository::run_list(a),
        args::Command::Expire(a) => repository::run_expire(a),
        args::Command::Info(a) => info::run(a),
        args::Command::ReplicaSql(a) => replica::run(a),
        args::Command::GenerateDocs(a) => docs::run(a),
    };
    if let Err(e) = r {
        eprintln!("tokubackup: {e}");
        std::process::exit(e.exit as i32);
    }
}
