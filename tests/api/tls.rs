//! The broker connection over TLS (mqtts://) with a private CA and a user name and password,
//! against a real Mosquitto started for the test with a certificate made for it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};

use crate::helpers::{spawn_unready, spawn_with, wait_for, Resources};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for `localhost` signed by it, and a password file.
fn make_credentials(dir: &Path) {
    let d = |f: &str| dir.join(f).display().to_string();
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=seano-test-ca",
        "-keyout",
        &d("ca.key"),
        "-out",
        &d("ca.pem"),
    ]));
    run(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &d("server.key"),
        "-out",
        &d("server.csr"),
    ]));
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &d("server.csr"),
        "-CA",
        &d("ca.pem"),
        "-CAkey",
        &d("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &d("san.ext"),
        "-out",
        &d("server.pem"),
    ]));
    run(Command::new("mosquitto_passwd").args([
        "-b",
        "-c",
        &d("passwords"),
        "gateway",
        "s3cret-pass",
    ]));
    // Mosquitto started as root drops to its own user, which must be able to read these.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in std::fs::read_dir(dir).unwrap() {
        std::fs::set_permissions(f.unwrap().path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn the_gateway_reaches_a_tls_broker_with_credentials_and_says_when_they_are_wrong() {
    let dir = std::env::temp_dir().join(crate::helpers::unique("seano-tls-"));
    std::fs::create_dir_all(&dir).unwrap();
    make_credentials(&dir);
    let (tls_port, plain_port) = (free_port(), free_port());
    let d = |f: &str| dir.join(f).display().to_string();
    std::fs::write(
        dir.join("mosquitto.conf"),
        format!(
            "per_listener_settings true\n\
             listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nallow_anonymous false\npassword_file {}\n\
             listener {plain_port} 127.0.0.1\nallow_anonymous true\n",
            d("ca.pem"), d("server.pem"), d("server.key"), d("passwords")
        ),
    )
    .unwrap();
    let _broker = Broker(
        Command::new("mosquitto")
            .args(["-c", &d("mosquitto.conf")])
            .spawn()
            .expect("mosquitto"),
    );
    wait_for("the TLS broker to listen", || async {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    })
    .await;

    // Wrong password: the gateway stays up, says why in /api/mqtt/status, and is not ready.
    let mut resources = Resources::fresh().await;
    resources.mqtt_url = Some(format!("mqtts://gateway:wrong-pass@localhost:{tls_port}"));
    let ca = dir.join("ca.pem");
    let mut refused = spawn_unready(resources, |s| s.mqtt_ca_file = Some(ca.clone())).await;
    wait_for("the broker to refuse the credentials", || async {
        refused.get("/api/mqtt/status").await.1["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused the credentials"))
    })
    .await;
    let (_, status) = refused.get("/api/mqtt/status").await;
    assert_eq!(status["connected"], false, "{status}");
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(refused.get("/ready").await.0, 503);
    assert_eq!(refused.get("/health").await.0, 200);
    refused.stop().await;

    let mut resources = Resources::fresh().await;
    resources.mqtt_url = Some(format!("mqtts://gateway:s3cret-pass@localhost:{tls_port}"));
    let mut app = spawn_with(resources, |s| s.mqtt_ca_file = Some(ca)).await;
    wait_for("the session to be established", || async {
        let (_, status) = app.get("/api/mqtt/status").await;
        status["connected"] == true && status["last_error"].is_null()
    })
    .await;
    assert_eq!(
        app.get("/api/mqtt/status").await.1["broker"],
        format!("mqtts://localhost:{tls_port}")
    );

    // A vehicle on the plain listener; the gateway receives it over TLS.
    let mut ws = app.connect_ws("/api/ws").await;
    ws.next_json().await;
    let mut vehicle =
        crate::helpers::Publisher::connect(&format!("mqtt://127.0.0.1:{plain_port}")).await;
    vehicle
        .publish(&format!("{}/4/raw_log", app.prefix), b"over tls".to_vec())
        .await;
    assert_eq!(ws.next_data().await["data"], "over tls");
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
