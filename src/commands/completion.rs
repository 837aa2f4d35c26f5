//! `completion`: a shell's completion script for the whole command line.

use anyhow::Result;
use clap::Args;
use clap_complete::Shell;

/// Prints a shell's completion script.
#[derive(Debug, Args)]
pub struct Completion {
    /// The shell.
    shell: Shell,
}

impl Completion {
    /// Prints the script completing `command` (the whole command line).
    pub fn run(self, mut command: clap::Command) -> Result<()> {
        clap_complete::generate(self.shell, &mut command, "wasmkube", &mut std::io::stdout());
        Ok(())
    }
}
