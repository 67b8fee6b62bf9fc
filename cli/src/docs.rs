//! Man pages and shell completions, generated from the clap definitions
//! (`tokubackup generate-docs`, run by ci/build-packages.sh).

use crate::args::{Cli, DocsArgs};
use crate::error::{Error, Exit, Result};
use clap::CommandFactory;
use clap_complete::Shell;

pub fn run(a: &DocsArgs) -> Result<()> {
    let io = |p: &std::path::Path, e: std::io::Error| Error::io(Exit::Usage, "cannot write", p, &e);
    std::fs::create_dir_all(&a.man).map_err(|e| io(&a.man, e))?;
    std::fs::create_dir_all(&a.completions).map_err(|e| io(&a.completions, e))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), &a.man).map_err(|e| io(&a.man, e))?;
    for sh in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(sh, &mut cmd.clone(), "tokubackup", &a.completions)
            .map_err(|e| io(&a.completions, e))?;
    }
    Ok(())
}
