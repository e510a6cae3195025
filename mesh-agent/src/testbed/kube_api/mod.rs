//! A fake Kubernetes API server for tests: enough of the API's JSON over HTTP/1.1 for the real
//! `kube` client (lists, watches with bookmarks and 410 Gone, TokenReviews), with objects the
//! test writes directly.
//!
//! It serves namespaces, pods, services, EndpointSlices, HTTPRoutes, GRPCRoutes and weft's
//! AuthorizationPolicies and PeerAuthentications (cluster-wide and namespaced paths), honours
//! equality label and field selectors, and ignores `limit`/`continue` (one page holds all).
//! Objects are stored and served as the test gave them, plus the metadata the server owns
//! (`resourceVersion`, `uid`, `creationTimestamp`). There is no authentication, validation,
//! defaulting or admission. `store` holds the objects and history, `server` answers requests,
//! `stream` streams watches, `select` reads selectors.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use mesh_agent::testbed::kube_api::FakeApi;
//! let fake = FakeApi::start().await?;
//! fake.apply(serde_json::json!({
//!     "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"},
//! }))?;
//! let client = fake.client()?;
//! # Ok(()) }
//! ```

pub mod audit;
mod select;
mod server;
mod store;
mod stream;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use server::{Identity, Shared, Signal};
use store::Store;

/// How often an open watch receives a BOOKMARK.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// A running fake API server; dropping it stops it and ends every connection.
pub struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeApi {
    /// Serves on 127.0.0.1 at a free port. Must be called within a Tokio runtime.
    pub async fn start() -> Result<FakeApi> {
        FakeApi::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves on `addr`.
    pub async fn bind(addr: SocketAddr) -> Result<FakeApi> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("fake API server: binding {addr}"))?;
        FakeApi::serve(listener)
    }

    /// Serves on a listener the caller bound, e.g. on a thread inside a node's network
    /// namespace ([`super::TestBed::in_netns`]); the socket stays in that namespace.
    pub fn from_std(listener: std::net::TcpListener) -> Result<FakeApi> {
        listener
            .set_nonblocking(true)
            .context("fake API server: making the listener non-blocking")?;
        let listener = TcpListener::from_std(listener).context("fake API server: listener")?;
        FakeApi::serve(listener)
    }

    fn serve(listener: TcpListener) -> Result<FakeApi> {
        let addr = listener
            .local_addr()
            .context("fake API server: local address")?;
        let (signal, _) = watch::channel(Signal::default());
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            signal,
            tokens: Mutex::new(HashMap::new()),
            bookmark_every: BOOKMARK_INTERVAL,
            bookmarks: AtomicU64::new(0),
            hidden: Mutex::new(HashSet::new()),
            requests: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Ok(FakeApi { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client configuration for this server: plain HTTP, no credentials.
    pub fn config(&self) -> Result<kube::Config> {
        let uri: http::Uri = self.url().parse().context("fake API server URL")?;
        Ok(kube::Config::new(uri))
    }

    /// Writes a kubeconfig naming this server (plain HTTP, no credentials) to `path`, for a
    /// process that builds its client with `kube::Client::try_default` (`KUBECONFIG=<path>`).
    pub fn write_kubeconfig(&self, path: &std::path::Path) -> Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: default}}}}]\n\
             current-context: fake\n",
            self.url()
        );
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    pub fn client(&self) -> Result<kube::Client> {
        kube::Client::try_from(self.config()?).context("fake API server: building a client")
    }

    /// Creates or replaces an object (by `apiVersion`, `kind`, `metadata.namespace` (default
    /// `default`) and `metadata.name`) and returns it as stored.
    pub fn apply(&self, object: Value) -> Result<Value> {
        let (stored, rv) = self.shared.store().apply(object)?;
        self.announce(rv, false);
        Ok(stored)
    }

    /// Deletes an object by kind (`Pod`), namespace (ignored for cluster-scoped kinds) and
    /// name; false when there was none.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let deleted = self.shared.store().delete(kind, namespace, name);
        if let Some(rv) = deleted {
            self.announce(rv, false);
        }
        deleted.is_some()
    }

    /// Drops the change history and ends every open watch: clients resume from a
    /// resourceVersion the server no longer has, get 410 Gone, and relist.
    pub fn compact(&self) {
        let rv = self.shared.store().compact();
        self.announce(rv, true);
    }

    /// The newest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv()
    }

    /// LIST requests served for a kind (`Pod`) so far.
    pub fn list_requests(&self, kind: &str) -> u64 {
        self.shared.store().lists(kind)
    }

    /// Every request received so far, in order, as the (verb, group, resource) RBAC checks;
    /// requests outside the resource paths are left out.
    pub fn requests(&self) -> Vec<audit::ApiCall> {
        self.shared.requests().clone()
    }

    /// BOOKMARK events sent so far, over all watches.
    pub fn bookmarks_sent(&self) -> u64 {
        self.shared.bookmarks.load(Ordering::Relaxed)
    }

    /// Serves a kind (`HTTPRoute`), or answers its paths with 404 as if its CRD were not
    /// installed. Open watches of the kind go on; new requests get 404.
    pub fn set_served(&self, kind: &str, served: bool) -> Result<()> {
        let id = store::by_kind(kind).with_context(|| format!("kind `{kind}` is not served"))?;
        let mut hidden = self.shared.hidden();
        if served {
            hidden.remove(&id);
        } else {
            hidden.insert(id);
        }
        Ok(())
    }

    /// Makes `token` authenticate as `username` with `extra` in TokenReviews.
    pub fn set_token(&self, token: &str, username: &str, extra: BTreeMap<String, Vec<String>>) {
        let identity = Identity {
            username: username.to_string(),
            extra,
        };
        self.shared.tokens().insert(token.to_string(), identity);
    }

    /// Makes `token` fail TokenReviews again.
    pub fn remove_token(&self, token: &str) {
        self.shared.tokens().remove(token);
    }

    fn announce(&self, rv: u64, end_watches: bool) {
        self.shared.signal.send_modify(|s| {
            s.rv = rv;
            if end_watches {
                s.epoch += 1;
            }
        });
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts until aborted; the connections are in a `JoinSet`, so aborting ends them too.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "fake API server: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Reap finished connections so the set does not grow with every request.
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(server::respond(shared, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests;

/// A fake API server on a test bed node's loopback, the kubeconfig agents started on that node
/// use to reach it, and the runtime serving it (dropped last).
pub struct NodeApi {
    pub api: FakeApi,
    pub kubeconfig: std::path::PathBuf,
    _runtime: tokio::runtime::Runtime,
}

impl NodeApi {
    /// Serves on `127.0.0.1:<free port>` inside `node`'s network namespace; the kubeconfig is
    /// written into the bed's work directory. Call outside any Tokio runtime.
    pub fn start(bed: &super::TestBed, node: &str) -> Result<NodeApi> {
        let runtime = tokio::runtime::Runtime::new().context("fake API server runtime")?;
        let listener = bed.in_netns(&bed.node(node).netns, || {
            std::net::TcpListener::bind("127.0.0.1:0")
        })??;
        let api = {
            let _in_runtime = runtime.enter();
            FakeApi::from_std(listener)?
        };
        let kubeconfig = bed.work_dir().join(format!("kubeconfig-{node}"));
        api.write_kubeconfig(&kubeconfig)?;
        Ok(NodeApi {
            api,
            kubeconfig,
            _runtime: runtime,
        })
    }
}

impl std::ops::Deref for NodeApi {
    type Target = FakeApi;

    fn deref(&self) -> &FakeApi {
        &self.api
    }
}
