//! `transfer-studio relabel`: images moved to another class folder on disk, as the window's
//! keys 1–9 do (never overwriting: a taken name gets a ` (2)` suffix).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::data::edit;

/// Move images to another class: each into the folder CLASS beside its own class folder.
#[derive(Debug, clap::Args)]
pub struct RelabelArgs {
    /// The class to move them to (created when missing).
    #[arg(long)]
    pub to: String,
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

impl RelabelArgs {
    pub fn run(&self) -> anyhow::Result<ExitCode> {
        let (journal, errors) = edit::move_images(&self.images, &self.to);
        for step in &journal.steps {
            if let edit::Step::Moved { from, to } = step {
                println!("{} -> {}", from.display(), to.display());
            }
        }
        for e in &errors {
            eprintln!("error: {e}");
        }
        Ok(if errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
