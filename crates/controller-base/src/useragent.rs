//! The User-Agent each component's requests carry, in the form upstream's components send
//! (`kubelet/v1.33.0 (linux/amd64) kubernetes/<commit>`; here `peapod/<version>` closes it).
//! The API server takes a write's field manager from it when the request names none, so
//! `managedFields` say who wrote what, as on any cluster: `kubelet` for pod status,
//! `kube-controller-manager` for the controllers' writes, `kube-scheduler` for the
//! scheduler's.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::FutureExt;
use http::header::{HeaderValue, USER_AGENT};
use http::{Request, Response};
use kube::client::Body;
use kube::Client;

/// The Kubernetes version peapod implements, as its components report it.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// `component`'s User-Agent.
pub fn user_agent(component: &str) -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!(
        "{component}/{KUBERNETES_VERSION} ({}/{arch}) peapod/{}",
        std::env::consts::OS,
        env!("CARGO_PKG_VERSION")
    )
}

/// A client over `client`'s connections whose requests carry `component`'s User-Agent. Named
/// again, the outer name wins (the scheduler's client is the controller manager's, renamed).
pub fn named(client: &Client, component: &str) -> Client {
    let agent = HeaderValue::from_str(&user_agent(component))
        .unwrap_or_else(|_| HeaderValue::from_static("peapod"));
    Client::new(
        Named {
            client: client.clone(),
            agent,
        },
        client.default_namespace(),
    )
}

/// The service under a [`named`] client: sets the header and sends through the inner client.
#[derive(Clone)]
struct Named {
    client: Client,
    agent: HeaderValue,
}

impl tower::Service<Request<Body>> for Named {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), kube::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let agent = &self.agent;
        request
            .headers_mut()
            .entry(USER_AGENT)
            .or_insert_with(|| agent.clone());
        let client = self.client.clone();
        async move { client.send(request).await }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manager_is_the_component_name() {
        let ua = user_agent("kube-scheduler");
        assert_eq!(ua.split('/').next(), Some("kube-scheduler"));
        assert!(ua.starts_with("kube-scheduler/v1.33.0 (linux/"), "{ua}");
        assert!(HeaderValue::from_str(&ua).is_ok());
    }

    #[tokio::test]
    async fn requests_carry_the_user_agent() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let record = seen.clone();
        let api = tower::service_fn(move |request: Request<Body>| {
            let ua = request.headers().get(USER_AGENT).cloned();
            *record.lock().unwrap_or_else(|p| p.into_inner()) = ua;
            async { Ok::<_, kube::Error>(Response::new(Body::from(b"ok".to_vec()))) }
        });
        let inner = named(&Client::new(api, "default"), "kube-controller-manager");
        let client = named(&inner, "kubelet");
        let body = client
            .request_text(Request::get("/version").body(Vec::new()).expect("request"))
            .await
            .expect("response");
        assert_eq!(body, "ok");
        let ua = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let ua = ua
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert!(
            ua.as_deref()
                .is_some_and(|ua| ua.starts_with("kubelet/v1.33.0 ")),
            "{ua:?}"
        );
    }
}
