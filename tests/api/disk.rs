//! A full disk is an outage like any other: the SQLite file on a small tmpfs, filled up while
//! boats publish. Nothing is acknowledged or broadcast that is not committed, `/ready` and the
//! stats name the cause, nothing the broker holds is lost, and ingest resumes by itself once
//! there is room again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{spawn_with, unique, wait_for, Resources};

/// A tmpfs of `size` mounted on a fresh folder; unmounted when dropped.
struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    /// `None` when this user may not mount (the test needs root, as CI runs it).
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = std::env::temp_dir().join(unique("seano-smallfs-"));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallFs { dir }),
            // SAFETY: geteuid has no preconditions and cannot fail.
            _ if unsafe { libc::geteuid() } != 0 => None,
            other => panic!("mounting a tmpfs as root failed: {other:?}"),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Writes zeros into `path` until the filesystem refuses more.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in [1 << 20, 4096, 64] {
        let zeros = vec![0u8; chunk];
        while f.write_all(&zeros).is_ok() {}
    }
    let _ = f.sync_all();
}

#[actix_web::test]
async fn a_full_disk_holds_ingest_back_and_it_resumes_by_itself_when_space_returns() {
    let Some(fs) = SmallFs::mount("24m") else {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    };
    let mut resources = Resources::fresh().await;
    resources.database_url = format!("sqlite://{}/seano.db?mode=rwc", fs.dir.display());
    let mut app = spawn_with(resources, |_| {}).await;
    let mut ws = app.connect_ws("/api/ws?types=vehicle_log").await;
    ws.next_json().await;
    app.publish("1/vehicle_log", br#"{"mode":"AUTO","n":0}"#.to_vec())
        .await;
    assert_eq!(ws.next_data().await["data"]["n"], 0);

    let filler = fs.dir.join("filler");
    fill(&filler);
    // Far more than SQLite's journal has room for, so commits fail for lack of space; and
    // fewer messages than a stock Mosquitto queues for a session (max_queued_messages 1000).
    const N: usize = 500;
    let pad = "x".repeat(8000);
    let mut publisher = app.publisher().await;
    let topic = format!("{}/1/vehicle_log", app.prefix);
    for n in 1..=N {
        publisher
            .send(
                &topic,
                format!(r#"{{"mode":"AUTO","n":{n},"pad":"{pad}"}}"#).into_bytes(),
            )
            .await;
    }
    publisher.wait_acks(N).await;

    wait_for("/ready to name the full database", || async {
        let (status, body) = app.get("/ready").await;
        status == 503 && body["database_full"] == true
    })
    .await;
    // An outage that lasts: several retries, each refused for lack of space.
    wait_for("several failed commits", || async {
        let (_, stats) = app.get("/api/ws/stats").await;
        stats["messages"]["commit_failures"].as_u64().unwrap() >= 5
    })
    .await;
    let (_, stats) = app.get("/api/ws/stats").await;
    assert_eq!(stats["database"]["full"], true, "{stats}");
    let error = stats["database"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("full") || error.contains("disk"), "{error}");
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("seano_database_full{") && l.ends_with(" 1")),
        "{metrics}"
    );

    // Whatever was broadcast is stored: no frame runs ahead of a commit.
    let stored = app.count("vehicle_logs").await;
    assert!((stored as usize) < N + 1, "some commits must have failed");
    for n in 1..stored {
        assert_eq!(ws.next_data().await["data"]["n"], n, "broadcast in order");
    }

    // Room again: ingest resumes by itself and every message the broker held is stored once.
    std::fs::remove_file(&filler).unwrap();
    app.wait_rows("vehicle_logs", N as i64 + 1).await;
    for n in stored..=N as i64 {
        assert_eq!(ws.next_data().await["data"]["n"], n, "broadcast in order");
    }
    wait_for("/ready again", || async {
        app.get("/ready").await.0 == 200
    })
    .await;
    let (_, stats) = app.get("/api/ws/stats").await;
    assert_eq!(stats["database"]["full"], false);
    assert_eq!(
        stats["messages"]["rejected_total"], 0,
        "nothing blamed on the messages"
    );
    app.stop().await;
    drop(fs);
}
