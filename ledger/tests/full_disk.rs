//! A real full disk: the ledger on a size-capped tmpfs fills up, the writer
//! poisons itself, and after the disk grows and the process restarts the log
//! opens, verifies and holds every acknowledged event.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ledger::{Error, Ledger, SigningKey};

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(Mount(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount {}", self.0.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn big_draft(i: usize) -> ledger::Draft {
    let filler = "x".repeat(200_000);
    ledger::Draft::from_json(&format!(
        r#"{{"kind":"execution.completed","body":{{"i":{i},"excerpt":"{filler}"}}}}"#
    ))
    .expect("draft")
}

#[test]
#[ignore = "mounts a tmpfs (needs root); tools/test.sh runs it"]
fn a_full_disk_poisons_the_writer_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = match Mount::tmpfs(&dir.path().join("mnt"), "48m") {
        Ok(m) => m,
        Err(e) => panic!("this test mounts a tmpfs (it needs root / CAP_SYS_ADMIN): {e}"),
    };
    let path = mount.0.join("ledger");
    let keys = ledger::KeyDir::new(mount.0.join("keys"));
    let ledger = Ledger::create(&path, &keys, SigningKey::from_seed(KEY_A), actor("init")).expect("create");
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..2_000 {
        match ledger.append_blocking(big_draft(i)) {
            Ok(r) => acked.push(r),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a 48 MiB disk fills up before 400 MB are written");
    assert!(
        matches!(failure, Error::WriteFailed(_) | Error::Poisoned(_)),
        "{failure:?}"
    );
    assert!(!acked.is_empty(), "some appends fit before the disk filled");
    let err = ledger.append_blocking(draft(0)).expect_err("poisoned");
    assert!(matches!(err, Error::Poisoned(_)), "{err:?}");
    drop(ledger);

    mount.resize("1g");
    let ledger = Ledger::open(&path, &keys).expect("reopen after the disk grew");
    for r in &acked {
        let e = ledger.get(r.seq).expect("read").expect("acknowledged event present");
        assert_eq!(e.hash, r.hash, "seq {}", r.seq);
    }
    ledger.append_blocking(draft(1)).expect("append after restart");
    drop(ledger);
    let report = verify(&path, None);
    assert!(report.ok(), "{:?}", report.failure);
}
