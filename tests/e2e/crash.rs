//! A writer killed with SIGKILL at a random moment loses no acknowledged write.
//!
//! The writer is this test binary itself, run again as a child for the ignored
//! test `crash::writer`: it writes from several tasks and prints every key the
//! store acknowledged; the parent kills it, reopens the store and looks for each.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use wasmkube_store::{Bytes, Store};
use wasmkube_store_embedded::{EmbeddedStore, FILE_NAME, OpenError, Options};

const DIR_ENV: &str = "WASMKUBE_CRASH_DIR";
const RUN_ENV: &str = "WASMKUBE_CRASH_RUN";
const WRITERS: usize = 8;

#[test]
#[ignore = "the child process of acknowledged_writes_survive_sigkill"]
fn writer() {
    let (Some(dir), Some(run)) = (std::env::var_os(DIR_ENV), std::env::var(RUN_ENV).ok()) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let path = PathBuf::from(dir).join(FILE_NAME);
        let store = Arc::new(EmbeddedStore::open(path, Options::default()).unwrap());
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, run) = (store.clone(), run.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/crash/{run}/{w}/{i}");
                        store
                            .create(&key, Bytes::from(key.clone()), None)
                            .await
                            .unwrap();
                        println!("ack {key}");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut rng = rand::rng();
    let mut total = 0;
    for run in 0..5 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env(RUN_ENV, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let (stdout, acked) = (child.stdout.take().unwrap(), acked.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    if let Some(key) = line.unwrap().strip_prefix("ack ") {
                        acked.lock().unwrap().push(key.to_owned());
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() < 50 {
            assert!(Instant::now() < deadline, "writer acknowledged nothing");
            std::thread::sleep(Duration::from_millis(5));
        }
        // While the writer lives, no other process may open its store.
        let locked = EmbeddedStore::open(&path, Options::default()).unwrap_err();
        assert!(matches!(locked, OpenError::Locked { .. }), "{locked:?}");
        std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();

        let acked = acked.lock().unwrap().clone();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = EmbeddedStore::open(&path, Options::default()).unwrap();
        runtime.block_on(async {
            for key in &acked {
                let kv = store.get(key).await.unwrap();
                let kv = kv.unwrap_or_else(|| panic!("acknowledged {key} lost in run {run}"));
                assert_eq!(kv.value, key.as_bytes());
            }
            let prefix = format!("/crash/{run}/");
            let stored = store
                .list(&prefix, &Default::default())
                .await
                .unwrap()
                .items
                .len();
            assert!(stored >= acked.len());
        });
        total += acked.len();
    }
    assert!(total >= 250);
}
