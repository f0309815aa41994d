//! Start-up configuration errors name the variable and the fix.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use seano_gateway::startup::Application;

use crate::helpers::{Resources, DEADLINE};

#[actix_web::test]
async fn a_taken_http_port_names_http_addr() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut settings = Resources::fresh().await.settings();
    settings.http_addr = taken.local_addr().unwrap();
    let err = Application::build(settings)
        .await
        .err()
        .expect("start-up fails");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("HTTP_ADDR") && msg.contains(&taken.local_addr().unwrap().to_string()),
        "{msg}"
    );
}

#[actix_web::test]
async fn a_taken_embedded_broker_port_names_mqtt_embedded_addr() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut settings = Resources::fresh().await.settings();
    settings.mqtt_url = None;
    settings.mqtt_embedded_addr = taken.local_addr().unwrap();
    let err = Application::build(settings)
        .await
        .err()
        .expect("start-up fails");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("MQTT_EMBEDDED_ADDR") && msg.contains("MQTT_URL"),
        "{msg}"
    );
}

#[test]
fn help_lists_every_setting_and_the_readme_documents_each() {
    let out = Command::new(env!("CARGO_BIN_EXE_seano-gateway"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let in_help: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().unwrap())
        .collect();
    for var in [
        "HTTP_ADDR",
        "DATABASE_URL",
        "MQTT_URL",
        "MQTT_EMBEDDED_ADDR",
        "MQTT_TOPIC_PREFIX",
        "MQTT_CLIENT_ID",
        "BATCH_MAX_MESSAGES",
        "WS_CLIENT_QUEUE",
    ] {
        assert!(in_help.contains(var), "--help mentions {var}");
    }

    // The README's configuration table: rows are `| `NAME`[, `NAME`] | default | meaning |`.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README has a Configuration section");
    let in_readme: BTreeSet<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split(" |").next())
        .flat_map(|names| names.split(['`', ',', ' ']).filter(|n| !n.is_empty()))
        .filter(|v| *v != "RUST_LOG")
        .collect();
    assert_eq!(
        in_help, in_readme,
        "--help and the README's table list the same settings"
    );
}

#[test]
fn invalid_configuration_stops_start_up_with_the_variable_named() {
    for (var, value, expected) in [
        ("HTTP_ADDR", "not-an-address", "HTTP_ADDR"),
        (
            "DATABASE_URL",
            "mysql://localhost/x",
            "invalid DATABASE_URL",
        ),
        ("MQTT_URL", "http://broker", "invalid MQTT_URL"),
        ("MQTT_TOPIC_PREFIX", "a/b", "invalid MQTT_TOPIC_PREFIX"),
        ("BATCH_MAX_MESSAGES", "0", "BATCH_MAX_MESSAGES"),
        ("INSTANCE_ID", "gw a/1", "invalid INSTANCE_ID"),
        ("MQTT_SHARED_GROUP", "a/b", "invalid MQTT_SHARED_GROUP"),
        (
            "AUTH_JWKS_URL",
            "ftp://idp.example/certs",
            "invalid AUTH_JWKS_URL",
        ),
        (
            "AUTH_JWT_ISSUER",
            "https://idp.example",
            "invalid AUTH_JWT_ISSUER",
        ),
        ("AUTH_JWT_LEEWAY_SECS", "100000", "AUTH_JWT_LEEWAY_SECS"),
        ("AUTH_JWKS_REFRESH_SECS", "1", "AUTH_JWKS_REFRESH_SECS"),
        ("RETENTION_VEHICLE_LOG", "1.5d", "RETENTION_VEHICLE_LOG"),
        ("RETENTION_ROLLUP", "2y", "RETENTION_ROLLUP"),
        ("PURGE_INTERVAL", "0", "invalid PURGE_INTERVAL"),
        ("PURGE_BATCH", "1", "PURGE_BATCH"),
    ] {
        let dir = std::env::temp_dir();
        let child = Command::new(env!("CARGO_BIN_EXE_seano-gateway"))
            .current_dir(&dir)
            .env(var, value)
            .env(
                "HTTP_ADDR",
                if var == "HTTP_ADDR" {
                    value
                } else {
                    "127.0.0.1:0"
                },
            )
            .env("MQTT_EMBEDDED_ADDR", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                if var == "DATABASE_URL" {
                    value.to_owned()
                } else {
                    format!(
                        "sqlite://{}/seano-cfg-{}.db?mode=rwc",
                        dir.display(),
                        std::process::id()
                    )
                },
            )
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = refused_at_start_up(child, &format!("{var}={value}"));
        assert!(stderr.contains(expected), "{var}={value}: {stderr}");
    }
}

#[test]
fn a_shared_group_without_postgresql_or_an_external_broker_is_refused_with_the_fix() {
    for (database, broker, expected) in [
        (
            "sqlite://seano-shared.db?mode=rwc",
            Some("mqtt://127.0.0.1:1"),
            "Set DATABASE_URL=postgres://",
        ),
        ("postgres://nobody@127.0.0.1:1/x", None, "Set MQTT_URL="),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_seano-gateway"));
        cmd.current_dir(std::env::temp_dir())
            .env("MQTT_SHARED_GROUP", "gateways")
            .env("DATABASE_URL", database)
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("MQTT_EMBEDDED_ADDR", "127.0.0.1:0")
            .env_remove("MQTT_URL");
        if let Some(url) = broker {
            cmd.env("MQTT_URL", url);
        }
        let child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = refused_at_start_up(child, &format!("{database} {broker:?}"));
        assert!(
            stderr.contains("invalid MQTT_SHARED_GROUP") && stderr.contains(expected),
            "{database} {broker:?}: {stderr}"
        );
    }
}

/// Waits for `child` to exit with a failure and returns its stderr. A gateway that starts
/// instead (the setting was not refused) is killed and the test fails, rather than waiting for
/// a server that never exits.
fn refused_at_start_up(mut child: Child, what: &str) -> String {
    let deadline = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the gateway started; start-up must be refused");
        }
        // Polling a child process: std offers no wait with a deadline.
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success(), "{what} must stop start-up");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}
