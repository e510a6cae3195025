//! The classic-proxy reference: client → HAProxy A (node A, plain in, TLS out) → HAProxy B
//! (node B, TLS in, plain out) → server; the same shape as two node proxies with mTLS between
//! them. The certificate is made by openssl at bench time, in the bed's work directory; A
//! verifies B against it.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mesh_agent::testbed::TestBed;

/// Where HAProxy A listens on node A for HTTP and for the bulk transfer.
pub const HTTP_PORT: u16 = 18080;
pub const BULK_PORT: u16 = 15201;
const TLS_HTTP_PORT: u16 = 18443;
const TLS_BULK_PORT: u16 = 15443;

pub struct Pair {
    pub a: Child,
    pub b: Child,
}

impl Pair {
    pub fn pids(&self) -> Vec<u32> {
        vec![self.a.id(), self.b.id()]
    }

    /// Starts both and waits until A's HTTP port answers from inside `pod`'s node.
    pub fn start(bed: &TestBed, server: (Ipv4Addr, u16, u16)) -> Result<Pair> {
        let dir = bed.work_dir().join("haproxy");
        std::fs::create_dir_all(&dir)?;
        certificate(&dir)?;
        let (a_ip, b_ip) = (bed.node("a").ip, bed.node("b").ip);
        let (server_ip, http_port, bulk_port) = server;
        let ca = dir.join("cert.pem");
        let ca = ca.display();
        let a = format!(
            "{}frontend http\n  mode http\n  bind {a_ip}:{HTTP_PORT}\n  default_backend tls_http\n\
             backend tls_http\n  mode http\n  http-reuse always\n  server b {b_ip}:{TLS_HTTP_PORT} ssl verify required ca-file {ca} verifyhost bench\n\
             frontend bulk\n  mode tcp\n  bind {a_ip}:{BULK_PORT}\n  default_backend tls_bulk\n\
             backend tls_bulk\n  mode tcp\n  server b {b_ip}:{TLS_BULK_PORT} ssl verify required ca-file {ca} verifyhost bench\n",
            common()
        );
        let crt = dir.join("b.pem");
        let crt = crt.display();
        let b = format!(
            "{}frontend tls_http\n  mode http\n  bind {b_ip}:{TLS_HTTP_PORT} ssl crt {crt}\n  default_backend app\n\
             backend app\n  mode http\n  http-reuse always\n  server s {server_ip}:{http_port}\n\
             frontend tls_bulk\n  mode tcp\n  bind {b_ip}:{TLS_BULK_PORT} ssl crt {crt}\n  default_backend bulk\n\
             backend bulk\n  mode tcp\n  server s {server_ip}:{bulk_port}\n",
            common()
        );
        let b = spawn(bed, "b", &dir, "b.cfg", &b)?;
        let a = spawn(bed, "a", &dir, "a.cfg", &a)?;
        // HAProxy binds before it reports nothing: give it a moment, then check both live.
        std::thread::sleep(Duration::from_millis(500));
        let mut pair = Pair { a, b };
        for child in [&mut pair.a, &mut pair.b] {
            if let Some(status) = child.try_wait()? {
                bail!("haproxy exited at start ({status}); see {}", dir.display());
            }
        }
        Ok(pair)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in [&mut self.a, &mut self.b] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn common() -> &'static str {
    "global\n  maxconn 4096\n\
     defaults\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
}

fn spawn(bed: &TestBed, node: &str, dir: &Path, name: &str, config: &str) -> Result<Child> {
    let path = dir.join(name);
    std::fs::write(&path, config)?;
    let mut cmd = Command::new("/usr/sbin/haproxy");
    cmd.arg("-db").arg("-f").arg(&path);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log")))?);
    bed.spawn_on_node(node, cmd)
        .with_context(|| format!("starting haproxy on node {node}"))
}

/// A self-signed P-256 certificate for the name `bench`; b.pem is certificate and key together,
/// as HAProxy's `crt` wants them.
fn certificate(dir: &Path) -> Result<()> {
    let status = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=bench", "-addext"])
        .args([
            "subjectAltName=DNS:bench",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .stderr(Stdio::null())
        .status()
        .context("running openssl")?;
    if !status.success() {
        bail!("openssl req failed ({status})");
    }
    let pem = std::fs::read_to_string(dir.join("cert.pem"))?
        + &std::fs::read_to_string(dir.join("key.pem"))?;
    std::fs::write(dir.join("b.pem"), pem)?;
    Ok(())
}
