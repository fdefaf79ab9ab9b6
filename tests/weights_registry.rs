//! Tests for `--weights NAME` resolution: cache lookup, download, offline errors.
//! No test needs the internet; the real-URL test accepts either outcome.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use swinq::weights_registry::{
    cache_dir, check_named_scale, lookup, resolve_weights, resolve_weights_with, KNOWN, RELEASE_URL,
};

/// Env vars are process-global and tests run on threads: serialize env users.
static ENV_LOCK: Mutex<()> = Mutex::new(());

fn env_lock() -> std::sync::MutexGuard<'static, ()> {
    ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn x2() -> &'static swinq::weights_registry::KnownWeights {
    lookup("swinir-light-x2").unwrap()
}

/// A base URL on which nothing listens, so connecting fails immediately.
fn dead_base() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/mirror")
}

/// Serve `body` for one HTTP request; returns the base URL.
fn serve_once(body: Vec<u8>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            // Read the request head; its content doesn't matter here.
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/v0.0")
}

fn no_part_files(dir: &Path) -> bool {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".part")),
        Err(_) => true, // never created: certainly no .part inside
    }
}

#[test]
fn known_table_is_consistent() {
    assert_eq!(KNOWN.len(), 3);
    assert_eq!(x2().bytes, Some(17_147_989));
    assert_eq!(x2().sha256.unwrap().len(), 64);
    for (k, s) in KNOWN.iter().zip(["x2", "x3", "x4"]) {
        assert_eq!(k.name, format!("swinir-light-{s}"));
        assert_eq!(
            k.file,
            format!("002_lightweightSR_DIV2K_s64w8_SwinIR-S_{s}.pth")
        );
    }
    assert_eq!(
        x2().url(RELEASE_URL),
        "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/\
         002_lightweightSR_DIV2K_s64w8_SwinIR-S_x2.pth"
    );
}

#[test]
fn lookup_is_case_insensitive_and_accepts_file_names() {
    assert_eq!(lookup("SwinIR-Light-X3").unwrap().name, "swinir-light-x3");
    assert_eq!(
        lookup("002_lightweightSR_DIV2K_s64w8_SwinIR-S_x4.pth")
            .unwrap()
            .name,
        "swinir-light-x4"
    );
    assert!(lookup("swinir-light-x8").is_none());
}

#[test]
fn existing_path_passes_through() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let p = f.path().to_str().unwrap();
    assert_eq!(resolve_weights(p).unwrap(), f.path());
}

#[test]
fn unknown_name_is_an_error_listing_known_names() {
    let err = resolve_weights("no-such-model-or-file.pth")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "`no-such-model-or-file.pth`: no such file, and not a known model name \
         (known: swinir-light-x2, swinir-light-x3, swinir-light-x4)"
    );
}

#[test]
fn cache_dir_precedence() {
    let _g = env_lock();
    let saved: Vec<_> = ["SWINQ_CACHE", "XDG_CACHE_HOME", "HOME"]
        .iter()
        .map(|k| (*k, std::env::var_os(k)))
        .collect();
    std::env::set_var("HOME", "/h");
    std::env::set_var("XDG_CACHE_HOME", "/x");
    std::env::set_var("SWINQ_CACHE", "/s");
    assert_eq!(cache_dir(), Path::new("/s"));
    std::env::remove_var("SWINQ_CACHE");
    assert_eq!(cache_dir(), Path::new("/x/swinq"));
    std::env::remove_var("XDG_CACHE_HOME");
    assert_eq!(cache_dir(), Path::new("/h/.cache/swinq"));
    for (k, v) in saved {
        match v {
            Some(v) => std::env::set_var(k, v),
            None => std::env::remove_var(k),
        }
    }
}

#[test]
fn cached_file_with_pinned_size_is_used() {
    let _g = env_lock();
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("SWINQ_CACHE", dir.path());
    // Dead mirror: if the cache were ignored, this would fail instead.
    std::env::set_var("SWINQ_WEIGHTS_MIRROR", dead_base());
    let want = dir.path().join(x2().file);
    File::create(&want).unwrap().set_len(17_147_989).unwrap(); // sparse
    let got = resolve_weights("swinir-light-x2");
    let got_upper = resolve_weights("SWINIR-LIGHT-X2");
    std::env::remove_var("SWINQ_CACHE");
    std::env::remove_var("SWINQ_WEIGHTS_MIRROR");
    assert_eq!(got.unwrap(), want);
    assert_eq!(got_upper.unwrap(), want);
}

#[test]
fn offline_failure_names_url_and_cache_path_fast() {
    let _g = env_lock();
    let dir = tempfile::tempdir().unwrap();
    let base = dead_base();
    std::env::set_var("SWINQ_CACHE", dir.path());
    std::env::set_var("SWINQ_WEIGHTS_MIRROR", &base);
    // A wrong-size cached file must not be accepted.
    let dest = dir.path().join(x2().file);
    fs::write(&dest, b"truncated").unwrap();
    let t = Instant::now();
    let res = resolve_weights("swinir-light-x2");
    let took = t.elapsed();
    std::env::remove_var("SWINQ_CACHE");
    std::env::remove_var("SWINQ_WEIGHTS_MIRROR");

    let msg = format!("{:#}", res.unwrap_err());
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        msg.starts_with("swinir-light-x2 is not in the cache and could not be downloaded ("),
        "{msg}"
    );
    assert!(msg.contains(&x2().url(&base)), "{msg}");
    assert!(msg.contains(&dest.display().to_string()), "{msg}");
    assert!(msg.ends_with(", or pass --weights PATH"), "{msg}");
    assert!(no_part_files(dir.path()));
}

/// The real GitHub URL: offline (as in CI sandboxes) it must fail within the
/// timeouts with the helpful message; online it must yield the verified file.
#[test]
fn real_release_url_fails_fast_offline_or_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let res = resolve_weights_with("swinir-light-x2", dir.path(), RELEASE_URL);
    let dest = dir.path().join(x2().file);
    match res {
        Ok(p) => {
            assert_eq!(p, dest);
            assert_eq!(fs::metadata(&p).unwrap().len(), 17_147_989);
        }
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("offline after {:?}: {msg}", t.elapsed());
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "took {:?}",
                t.elapsed()
            );
            assert!(msg.contains(&x2().url(RELEASE_URL)), "{msg}");
            assert!(msg.contains(&dest.display().to_string()), "{msg}");
            assert!(!dest.exists());
        }
    }
    assert!(no_part_files(dir.path()));
}

#[test]
fn unpinned_download_lands_under_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let base = serve_once(body.clone());
    let p = resolve_weights_with("swinir-light-x3", dir.path(), &base).unwrap();
    assert_eq!(
        p,
        dir.path()
            .join("002_lightweightSR_DIV2K_s64w8_SwinIR-S_x3.pth")
    );
    assert_eq!(fs::read(&p).unwrap(), body);
    assert!(no_part_files(dir.path()));
}

#[test]
fn pinned_download_with_wrong_content_is_rejected_and_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve_once(b"not the real checkpoint".to_vec());
    let msg = format!(
        "{:#}",
        resolve_weights_with("swinir-light-x2", dir.path(), &base).unwrap_err()
    );
    assert!(msg.contains("expected 17147989"), "{msg}");
    assert!(!dir.path().join(x2().file).exists());
    assert!(no_part_files(dir.path()));
}

/// A model name's cached file must hold a model of the name's scale (x3 and x4 have no
/// pinned hash); a path is taken as given.
#[test]
fn named_weights_must_have_the_names_scale() {
    let cached = Path::new("/cache/002_lightweightSR_DIV2K_s64w8_SwinIR-S_x3.pth");
    let err = format!("{:#}", check_named_scale("swinir-light-x3", cached, 2).unwrap_err());
    assert!(err.contains("is a ×2 model, not ×3") && err.contains("delete it"), "{err}");
    check_named_scale("swinir-light-x3", cached, 3).unwrap();
    let err = format!("{:#}", resolve_weights_with("", cached, &dead_base()).unwrap_err());
    assert!(err.contains("--weights is empty"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.pth");
    File::create(&path).unwrap();
    check_named_scale(path.to_str().unwrap(), &path, 2).unwrap();
    assert!(KNOWN.iter().all(|k| k.name.ends_with(&format!("x{}", k.scale))));
}
