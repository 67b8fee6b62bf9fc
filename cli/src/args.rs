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
    /// Upload a complete, verified backup into a repository (s3://BUCKET/PREFIX or a directory)
    #[command(after_help = crate::error::EXIT_HELP)]
    Push(PushArgs),
    /// List the backups in a repository
    #[command(after_help = crate::error::EXIT_HELP)]
    List(ListArgs),
    /// Remove a repository's backups by age, and the chunks no kept backup needs
    #[command(after_help = crate::error::EXIT_HELP)]
    Expire(ExpireArgs),
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
    /// Read only this option file (groups [client], [client-server], [client-mariadb], [tokubackup])
    #[arg(long, value_name = "FILE")]
    pub defaults_file: Option<PathBuf>,
    /// Read this option file after the global ones, before ~/.my.cnf
    #[arg(long, value_name = "FILE", conflicts_with = "defaults_file")]
    pub defaults_extra_file: Option<PathBuf>,
    /// Read no option file (default: /etc/my.cnf, /etc/mysql/my.cnf, $MARIADB_HOME/my.cnf, ~/.my.cnf)
    #[arg(long, conflicts_with_all = ["defaults_file", "defaults_extra_file"])]
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
    /// Then push the backup into this repository (s3://BUCKET/PREFIX or a directory)
    #[arg(long, value_name = "REPO")]
    pub push: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Print the manifest (JSON) when the backup is complete (the destination must be local)
    #[arg(long)]
    pub json: bool,
    /// Print help (-h is --host, as in the mariadb client)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// Backup directory, or REPO[:ID] (all backups of a repository, or one; ID may be `latest`)
    pub backup: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
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

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// Backup directory, or REPO:ID (REPO:latest) of a repository
    pub backup: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
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

/// The key of a repository.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// File holding the repository's key or password (default: $TOKUBACKUP_KEY_FILE)
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Backup directory (complete; verified against its manifest first)
    pub backup: PathBuf,
    /// Repository: s3://BUCKET/PREFIX (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or a directory
    pub repo: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Print what was pushed as JSON
    #[arg(long)]
    pub json: bool,
    /// Threads that verify the backup first
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Repository: s3://BUCKET/PREFIX or a directory
    pub repo: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Print the list as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExpireArgs {
    /// Repository: s3://BUCKET/PREFIX or a directory
    pub repo: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Keep the N newest backups
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: usize,
    /// Keep the newest backup of each of the last N days (UTC) that have one
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: usize,
    /// Keep the newest backup of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: usize,
    /// Print what was kept and removed as JSON
    #[arg(long)]
    pub json: bool,
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
