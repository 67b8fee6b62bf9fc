//! `tokubackup replica-sql`: the statements that make a server restored
//! from the backup replicate from its source, from the snapshot on, whatever
//! the restored server's recovery wrote into its own binary log.

use crate::args::ReplicaArgs;
use crate::error::{Error, Exit, Result};
use crate::manifest::Backup;
use crate::mariadb::quote;
use crate::password;

pub fn statements(b: &Backup, host: &str, port: u16, user: &str, pass: &str) -> Result<String> {
    let bl = b.binlog.as_ref().ok_or_else(|| {
        Error::new(
            Exit::NotABackup,
            format!(
                "backup '{}' has no binary log position (its server ran without log-bin): it cannot seed a replica",
                b.dir.display()
            ),
        )
    })?;
    // RESET MASTER: the restored server's binary logs are the source's
    // copies plus the GTIDs its own crash (DDL) recovery may have written;
    // with gtid_strict_mode those make SET gtid_slave_pos fail, and with
    // log_slave_updates the replicated events would be out of order after
    // them. A replica without log-bin has none (RESET MASTER would fail).
    Ok(format!(
        "-- snapshot of {}: binlog {}:{}\n\
         EXECUTE IMMEDIATE IF(@@GLOBAL.log_bin, 'RESET MASTER', 'DO 0');\n\
         SET GLOBAL gtid_slave_pos={};\nCHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={port}, MASTER_USER={}, MASTER_PASSWORD={}, MASTER_USE_GTID=slave_pos;\nSTART SLAVE;\n",
        b.dir.display(),
        bl.file,
        bl.position,
        quote(&bl.gtid),
        quote(host),
        quote(user),
        quote(pass)
    ))
}

pub fn run(a: &ReplicaArgs) -> Result<()> {
    let b = Backup::open(&a.backup)?;
    b.check_marker()?;
    let pass = match &a.source_password_file {
        Some(f) => password::from_file(f)?,
        None => password::prompt(&format!(
            "the password of '{}' on the source",
            a.source_user
        ))?,
    };
    print!(
        "{}",
        statements(&b, &a.source_host, a.source_port, &a.source_user, &pass)?
    );
    Ok(())
}
