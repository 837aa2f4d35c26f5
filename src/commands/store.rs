//! `store`: a cluster moved between stores — a snapshot of the embedded
//! store (or etcd) restored into etcd (or a new data dir); and the one way a
//! server or this command opens a store, with the flags that name etcd and
//! how it is reached over TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use wasmkube_encryption::{ConfigError, Encrypted, EncryptionConfig};
use wasmkube_store::{Store, snapshot};
use wasmkube_store_embedded::{EmbeddedStore, FILE_NAME};

use crate::exit::Failure;

/// Moves a cluster between stores.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Write every object of a store to FILE (the embedded store must not
    /// be in use: stop `wasmkube up` first). Values encrypted at rest are
    /// copied as they are stored, so they stay encrypted in FILE and a store
    /// restored from it needs the same encryption configuration.
    Snapshot(StoreArgs),
    /// Write every object of a snapshot into an empty store.
    Restore(StoreArgs),
}

/// A snapshot file and the store it comes from or goes to.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The snapshot file.
    file: PathBuf,
    /// The data dir of the embedded store.
    #[arg(long, default_value = "wasmkube-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    etcd: EtcdArgs,
}

impl StoreCommand {
    /// Takes the snapshot, or restores it.
    pub async fn run(self) -> Result<()> {
        match self {
            StoreCommand::Snapshot(args) => {
                let store = open(&args.data_dir, &args.etcd, None).await?;
                let file = std::fs::File::create(&args.file)
                    .with_context(|| format!("creating {}", args.file.display()))?;
                let mut out = std::io::BufWriter::new(file);
                let moved = snapshot::snapshot(store.as_ref(), &mut out).await?;
                out.into_inner()
                    .map_err(|e| e.into_error())?
                    .sync_all()
                    .with_context(|| format!("writing {}", args.file.display()))?;
                println!(
                    "{} keys at revision {} written to {}",
                    moved.keys,
                    moved.revision,
                    args.file.display()
                );
            }
            StoreCommand::Restore(args) => {
                let file = std::fs::File::open(&args.file).map_err(|e| {
                    Failure::Usage.because(format!("opening {}: {e}", args.file.display()))
                })?;
                let store = open(&args.data_dir, &args.etcd, None).await?;
                let mut input = std::io::BufReader::new(file);
                let moved = snapshot::restore(store.as_ref(), &mut input).await?;
                println!(
                    "{} keys (taken at revision {}) restored",
                    moved.keys, moved.revision
                );
            }
        }
        Ok(())
    }
}

/// etcd instead of the embedded store, and how it is reached over TLS (the
/// Kubernetes API server's flags).
#[derive(Debug, Args)]
pub struct EtcdArgs {
    /// Keep objects in etcd instead of the embedded store:
    /// `etcd=http://HOST:PORT[,…]`, or `https://` URLs for etcd over TLS.
    #[arg(long, value_name = "etcd=URL[,URL…]", value_parser = parse_etcd)]
    store: Option<EtcdEndpoints>,
    /// The CA that signs etcd's serving certificate (PEM), for `https://`
    /// endpoints (default: the host's trusted roots).
    #[arg(long, value_name = "FILE", requires = "store")]
    etcd_cafile: Option<PathBuf>,
    /// The client certificate shown to etcd (PEM), for an etcd that asks its
    /// clients for one (`--client-cert-auth`).
    #[arg(long, value_name = "FILE", requires_all = ["store", "etcd_keyfile"])]
    etcd_certfile: Option<PathBuf>,
    /// The private key of `--etcd-certfile` (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_certfile")]
    etcd_keyfile: Option<PathBuf>,
}

impl EtcdArgs {
    /// Whether objects are kept in etcd.
    pub fn chosen(&self) -> bool {
        self.store.is_some()
    }

    /// How the etcd store connects, when one is chosen: the TLS flags are
    /// only for `https://` endpoints, and their files are read now.
    fn options(&self) -> Result<Option<wasmkube_store_etcd::Options>> {
        let Some(EtcdEndpoints { urls, secure }) = &self.store else {
            return Ok(None);
        };
        let flags = self.etcd_cafile.is_some() || self.etcd_certfile.is_some();
        let tls = match (secure, flags) {
            (false, true) => {
                return Err(Failure::Usage.because(
                    "--etcd-cafile, --etcd-certfile and --etcd-keyfile are for https:// endpoints",
                ));
            }
            (false, false) => None,
            (true, _) => Some(wasmkube_store_etcd::Tls {
                ca_pem: self.etcd_cafile.as_deref().map(read).transpose()?,
                identity: match (&self.etcd_certfile, &self.etcd_keyfile) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    _ => None,
                },
            }),
        };
        Ok(Some(wasmkube_store_etcd::Options {
            tls,
            ..wasmkube_store_etcd::Options::new(urls.clone())
        }))
    }
}

/// A file named by a flag, as text.
fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file)
        .map_err(|e| Failure::Usage.because(format!("reading {}: {e}", file.display())))
}

/// The client URLs of an etcd cluster, all `http://` or all `https://`.
#[derive(Debug, Clone)]
struct EtcdEndpoints {
    urls: Vec<String>,
    /// Whether they are `https://` URLs.
    secure: bool,
}

/// `etcd=http://HOST:PORT[,…]` (or `https://`) as the endpoints it names.
fn parse_etcd(spec: &str) -> Result<EtcdEndpoints> {
    let Some(urls) = spec.strip_prefix("etcd=") else {
        bail!("expected etcd=http://HOST:PORT[,…], got {spec:?}");
    };
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    let secure = urls[0].starts_with("https://");
    let scheme = if secure { "https://" } else { "http://" };
    if let Some(bad) = urls.iter().find(|u| !u.starts_with(scheme)) {
        bail!("etcd endpoint {bad:?} must be an {scheme} URL, as the first one is");
    }
    Ok(EtcdEndpoints { urls, secure })
}

/// The store in `data_dir` (made if missing), or the etcd `etcd` names; with
/// an `EncryptionConfiguration` file, the values of the resources it names
/// are encrypted in it.
pub async fn open(
    data_dir: &Path,
    etcd: &EtcdArgs,
    encryption: Option<&Path>,
) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = match etcd.options()? {
        None => {
            // Made if missing, with the store file, for its owner alone.
            let store = EmbeddedStore::open(data_dir.join(FILE_NAME), Default::default())?;
            if let Some(r) = store.recovery() {
                tracing::warn!(
                    torn_bytes = r.torn_bytes,
                    "store recovered from a torn write"
                );
            }
            Arc::new(store)
        }
        Some(options) => Arc::new(wasmkube_store_etcd::EtcdStore::connect(options).await?),
    };
    let Some(file) = encryption else {
        return Ok(store);
    };
    let config = EncryptionConfig::read(file).map_err(|e| match e {
        ConfigError::Read { .. } => Failure::Usage.because(e),
        e => Failure::Usage.because(format!("{}: {e}", file.display())),
    })?;
    tracing::info!(
        config = %file.display(),
        "the values of the resources it names are encrypted at rest"
    );
    Ok(Arc::new(Encrypted::new(store, config)))
}
