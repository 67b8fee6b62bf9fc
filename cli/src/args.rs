//! The command line, defined once: parsing, --help, the man page and the
//! shell completions all come from these definitions.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "tokubackup",
    version,
    about = "Take, verify, inspect and restore hot backups of MariaDB made by the tokudb_backup plugin",
    after_help = crate::error::EXIT_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a hot backup on a running server into DEST (SET tokudb_backup_dir)
    #[command(after_help = crate::error::EXIT_HELP)]
    Backup(BackupArgs),
    /// Check a backup: completion marker, every file's size and checksum, no unlisted file
    #[command(after_help = crate::error::EXIT_HELP)]
    Verify(VerifyArgs),
    /// Put a backup's directories back (copy or move), owned by the server's user
    #[command(after_help = crate::error::EXIT_HELP)]
    Restore(RestoreArgs),
    /// Summarise a backup (versions, times, size, binary log position)
    #[command(after_help = crate::error::EXIT_HELP)]
    Info(InfoArgs),
    /// Print the statements that start replication from a backup's snapshot
    #[command(after_help = crate::error::EXIT_HELP)]
    ReplicaSql(ReplicaArgs),
    /// Write the man pages and shell completions (used by packaging)
    #[command(hide = true)]
    GenerateDocs(DocsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Unix socket of the server
    #[arg(short = 'S', long)]
    pub socket: Option<String>,
    /// Host of the server (TCP unless --socket is given)
    #[arg(short = 'h', long)]
    pub host: Option<String>,
    /// TCP port of the server
    #[arg(short = 'P', long)]
    pub port: Option<u16>,
    /// User to log in as (needs SUPER)
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Password; prompted for on the terminal when given without a value
    #[arg(short = 'p', long, num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub password: Option<String>,
    /// Read only this option file
    #[arg(long, value_name = "FILE")]
    pub defaults_file: Option<PathBuf>,
    /// Read no option file
    #[arg(long, conflicts_with = "defaults_file")]
    pub no_defaults: bool,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct BackupArgs {
    /// Destination directory on the server's host (absent or empty)
    pub dest: String,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Bytes per second the copy may read
    #[arg(long, value_name = "BYTES_PER_SEC")]
    pub throttle: Option<u64>,
    /// POSIX extended regex: source files whose path matches are not copied
    #[arg(long, value_name = "REGEX")]
    pub exclude: Option<String>,
    /// Print the manifest (JSON) when the backup is complete (the destination must be local)
    #[arg(long)]
    pub json: bool,
    /// Print help (-h is --host, as in the mariadb client)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Backup directory
    pub backup: PathBuf,
    /// Also restore a scratch copy, run crash recovery and CHECK TABLE on it
    #[arg(long)]
    pub recover: bool,
    /// Scratch directory for --recover (default: next to the backup)
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Server binary for --recover
    #[arg(long, value_name = "PATH", default_value = "mariadbd")]
    pub mariadbd: String,
    /// Option for the --recover server, e.g. --mariadbd-arg=--innodb-undo-tablespaces=2 (repeatable)
    #[arg(
        long = "mariadbd-arg",
        value_name = "OPTION",
        allow_hyphen_values = true
    )]
    pub mariadbd_args: Vec<String>,
    /// Threads that read files
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Backup directory
    pub backup: PathBuf,
    /// Where the datadir goes
    #[arg(long, value_name = "DIR")]
    pub datadir: PathBuf,
    /// Put the directory backed up from ORIGINAL at NEW instead (repeatable)
    #[arg(long = "map", value_name = "ORIGINAL=NEW")]
    pub maps: Vec<String>,
    /// Owner of the restored files
    #[arg(long, default_value = "mysql")]
    pub user: String,
    /// Move the files out of the backup instead of copying them
    #[arg(long = "move")]
    pub move_files: bool,
    /// Do not verify the backup first
    #[arg(long)]
    pub no_verify: bool,
    /// Server binary whose version must match the backup's
    #[arg(long, value_name = "PATH", default_value = "mariadbd")]
    pub mariadbd: String,
    /// Restore even if the server binary's version differs from the backup's
    #[arg(long)]
    pub ignore_version: bool,
    /// Copy threads
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Backup directory
    pub backup: PathBuf,
    /// Print the manifest as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct ReplicaArgs {
    /// Backup directory
    pub backup: PathBuf,
    /// Host of the source server the replica connects to
    #[arg(long)]
    pub source_host: String,
    /// Port of the source server
    #[arg(long, default_value_t = 3306)]
    pub source_port: u16,
    /// Replication user on the source
    #[arg(long)]
    pub source_user: String,
    /// File holding the replication user's password (else prompted for)
    #[arg(long, value_name = "FILE")]
    pub source_password_file: Option<PathBuf>,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

#[derive(Args, Debug)]
pub struct DocsArgs {
    /// Directory for tokubackup.1 and tokubackup-SUBCOMMAND.1
    #[arg(long)]
    pub man: PathBuf,
    /// Directory for bash, zsh and fish completions
    #[arg(long)]
    pub completions: PathBuf,
}

pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}
