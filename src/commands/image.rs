//! `image`: the components of a node's local image store, for nodes that
//! cannot reach a registry.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use wasmkube_oci::{ImageStore, normalize};

use super::print::{aligned, mebibytes};
use crate::exit::Failure;

/// Manages the components of a node's local image store.
#[derive(Debug, Args)]
pub struct Image {
    /// The node's data dir.
    #[arg(long, default_value = "wasmkube-data", global = true)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

/// What to do with the local images.
#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Put a component in a node's local image store (for air-gapped
    /// nodes); pods then name it with `imagePullPolicy: Never` or
    /// `IfNotPresent`.
    Import {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The name pods use: `NAME[:TAG]`.
        reference: String,
    },
    /// List the components in a node's local image store.
    Ls,
    /// Remove a tag from a node's local image store (and the component once
    /// no tag names it).
    Rm {
        /// `NAME[:TAG]`, one or more.
        #[arg(required = true)]
        references: Vec<String>,
    },
}

impl Image {
    /// Runs the subcommand on the store in the data dir.
    pub fn run(self) -> Result<()> {
        let data_dir: &Path = &self.data_dir;
        let images = ImageStore::open(data_dir)
            .with_context(|| format!("opening the image store in {}", data_dir.display()))?;
        match self.command {
            ImageCommand::Import { file, reference } => {
                let image = images.import(&file, &reference)?;
                println!("{} is {}", normalize(&reference)?, image.digest);
            }
            ImageCommand::Ls => {
                let rows = images
                    .list()?
                    .into_iter()
                    .map(|(reference, image, size)| vec![reference, image.digest, mebibytes(size)]);
                let header = ["IMAGE", "DIGEST", "SIZE"].map(String::from).to_vec();
                print!("{}", aligned(std::iter::once(header).chain(rows)));
            }
            ImageCommand::Rm { references } => {
                for reference in references {
                    let Some(image) = images.remove(&reference)? else {
                        return Err(Failure::NotFound.because(format!(
                            "no image {reference} in {} (`wasmkube image ls` lists them)",
                            data_dir.display()
                        )));
                    };
                    println!("removed {} ({})", normalize(&reference)?, image.digest);
                }
            }
        }
        Ok(())
    }
}
