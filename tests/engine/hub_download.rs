//! Hub downloads against a minimal hub on loopback: cached, checked against their sha256, then
//! used offline; a download killed halfway is finished by the next run.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use transfer_studio::model::Backbone;
use transfer_studio::model::hub::Hub;

use super::backbones::{TIMM_CONFIG, binary, safetensors_bytes, synthetic_weights};

/// A minimal hub on loopback: serves `files` of one repository at `/REPO/resolve/main/FILE`
/// with the headers hf-hub reads (`x-repo-commit`, `etag`, `content-range`), honouring
/// `Range`; `serve` says how much of each body is sent. Serves `requests` requests, then stops.
fn mock_hub(files: Vec<(String, Vec<u8>, String)>, serve: Serve, requests: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut start = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(range) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    start = range
                        .split('-')
                        .next()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0);
                }
            }
            let found = files
                .iter()
                .find(|(name, _, _)| path.ends_with(&format!("/resolve/main/{name}")));
            let Some((_, body, etag)) = found else {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let mut slice = &body[start.min(body.len())..];
            // A stalled download announces the whole rest and sends half of it.
            let announced = slice.len();
            if serve != Serve::Whole && slice.len() > 1 {
                slice = &slice[..slice.len() / 2];
            }
            let header = format!(
                "HTTP/1.1 206 Partial Content\r\nx-repo-commit: 0123456789abcdef0123456789abcdef01234567\r\n\
                 etag: \"{etag}\"\r\ncontent-range: bytes {start}-{}/{}\r\ncontent-length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len().saturating_sub(1),
                body.len(),
                if serve == Serve::HalfThenStall {
                    announced
                } else {
                    slice.len()
                }
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(slice);
            if serve == Serve::HalfThenStall {
                // Hold the connection open elsewhere while the next requests are served.
                let _ = stream.flush();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs(30));
                    drop(stream);
                });
            }
        }
    });
    address
}

/// How much of each body [`mock_hub`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serve {
    Whole,
    /// Half, then the connection closes (a dropped connection).
    Half,
    /// Half, then nothing for 30 s (a download in progress).
    HalfThenStall,
}

/// A real download from a loopback hub: progress shown, the file lands in the cache, the next
/// run needs no server; a download cut short is refused by its sha256.
#[test]
fn hub_downloads_are_cached_verified_and_then_used_offline() {
    use sha2::Digest;
    common::init();
    let resnet: Backbone = "resnet18".parse().expect("registered");
    let bytes = safetensors_bytes(&synthetic_weights(resnet));
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let files = vec![
        ("model.safetensors".to_owned(), bytes.clone(), sha.clone()),
        (
            "config.json".to_owned(),
            TIMM_CONFIG.as_bytes().to_vec(),
            "1234abcd".to_owned(),
        ),
    ];
    let home = tempfile::tempdir().expect("HF_HOME");
    let endpoint = mock_hub(files.clone(), Serve::Whole, 16);
    let mut seen = Vec::new();
    let hub = Hub::with_cache(home.path().join("hub"), Some(endpoint));
    let fetched = hub
        .fetch("test/dl", Some(&mut |done, total| seen.push((done, total))))
        .expect("download");
    assert_eq!(std::fs::read(&fetched.weights).expect("cached"), bytes);
    assert_eq!(fetched.expected_sha256.as_deref(), Some(sha.as_str()));
    assert!(fetched.config.is_some(), "config.json comes along");
    assert_eq!(seen.last(), Some(&(bytes.len() as u64, bytes.len() as u64)));
    // No server any more: the cache answers.
    let offline = Hub::with_cache(home.path().join("hub"), Some("http://127.0.0.1:9".into()));
    assert!(offline.fetch("test/dl", None).is_ok());

    // A connection that drops halfway: the short file is caught by its sha256.
    let home2 = tempfile::tempdir().expect("HF_HOME");
    let endpoint = mock_hub(files.clone(), Serve::Half, 16);
    let out = predict_from_hub("test/dl", home2.path(), &endpoint)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sha256"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The damaged file left the cache: the next run downloads it again and succeeds.
    let endpoint = mock_hub(files, Serve::Whole, 16);
    let again = predict_from_hub("test/dl", home2.path(), &endpoint)
        .output()
        .expect("runs");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// `predict` with ResNet-18 weights from `repo` on the hub at `endpoint`, cached under `home`.
fn predict_from_hub(repo: &str, home: &Path, endpoint: &str) -> Command {
    let mut command = binary();
    command
        .args(["predict", "--backbone", "resnet18", "--weights"])
        .arg(format!("hf:{repo}"))
        .arg(common::fixture("coffee.png"))
        .env("HF_HOME", home)
        .env("HF_ENDPOINT", endpoint);
    command
}

/// Files of the hub cache's blob folder of `repo` under `home`.
fn blobs(home: &Path, repo: &str) -> Vec<PathBuf> {
    let dir = home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("blobs");
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// `kill -9` in the middle of a download: nothing half-downloaded is ever used, and the next
/// run finishes the download (resuming it) and works.
#[test]
fn a_download_killed_halfway_is_finished_by_the_next_run() {
    use sha2::Digest;
    let resnet: Backbone = "resnet18".parse().expect("registered");
    let bytes = safetensors_bytes(&synthetic_weights(resnet));
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let files = vec![("model.safetensors".to_owned(), bytes.clone(), sha.clone())];
    let home = tempfile::tempdir().expect("HF_HOME");
    let run = |endpoint: String| {
        let mut command = predict_from_hub("test/kill", home.path(), &endpoint);
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    };
    let mut child = run(mock_hub(files.clone(), Serve::HalfThenStall, 4))
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    let part_len = || {
        blobs(home.path(), "test/kill")
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "part"))
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    };
    while part_len() < bytes.len() as u64 / 2 {
        assert!(start.elapsed().as_secs() < 60, "the download never started");
        assert!(child.try_wait().expect("wait").is_none(), "exited early");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let blob = home.path().join("hub/models--test--kill/blobs").join(&sha);
    assert!(
        !blob.exists(),
        "a half download is never published as the blob"
    );

    let status = run(mock_hub(files, Serve::Whole, 8)).status().expect("run");
    assert!(status.success());
    assert_eq!(std::fs::read(&blob).expect("blob"), bytes);
    let names: Vec<PathBuf> = blobs(home.path(), "test/kill");
    assert!(
        names
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "part")),
        "{names:?}"
    );
}
