//! The Kubernetes edge against a mocked API server (`tower_test::mock::pair`, as kube-rs's
//! controller-rs tests its reconcilers): a verifier plays the API server, asserting each request's
//! verb, path, field manager and body, and answering as a real one would, including a conflict, a
//! server error and a watch that ends. No API server can run here; what is sent is exactly what
//! the brain would send on a role change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

use super::objects::{Slice, EPOCH, STEP};
use super::KubeRouter;
use crate::brain::router::{Route, RouteError, RouteStep, RouteVersion, Router};
use crate::config::kubernetes::{KubeCluster, KubeDeployment, KubernetesConfig};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn config() -> KubernetesConfig {
    let addresses: BTreeMap<String, String> =
        [("dc", "10.1.0.21"), ("ndc", "10.2.0.21"), ("dr", "10.3.0.21")].map(|(m, a)| (m.into(), a.into())).into();
    KubernetesConfig {
        enabled: true,
        clusters: vec![KubeCluster { cluster: "customs".into(), port: 5432, addresses }],
        deployments: vec![KubeDeployment {
            name: "asycuda-ndc".into(),
            namespace: "asycuda".into(),
            cluster: "customs".into(),
            site: "ndc".into(),
            replicas_with_primary: 4,
            replicas_otherwise: 1,
        }],
        ..Default::default()
    }
}

/// A router on a mocked API server, and the server's end.
fn router() -> (Arc<KubeRouter>, kube::Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "triad");
    (Arc::new(KubeRouter::new(Some(client.clone()), config())), client, handle)
}

fn route(epoch: u64, step: RouteStep, primary: Option<&str>, site: &str) -> Route {
    let standbys = ["dc", "ndc", "dr"].into_iter().filter(|m| Some(*m) != primary && *m != site).map(String::from);
    Route {
        cluster: "customs".into(),
        version: RouteVersion { epoch, step },
        primary: primary.map(String::from),
        primary_site: site.into(),
        standbys: standbys.collect(),
    }
}

/// An EndpointSlice as the API server returns it.
fn slice(name: &str, epoch: u64, step: &str, resource_version: &str, addresses: &[&str]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "triad",
            "resourceVersion": resource_version,
            "labels": { "endpointslice.kubernetes.io/managed-by": "triad.io" },
            "annotations": { EPOCH: epoch.to_string(), STEP: step },
        },
        "addressType": "IPv4",
        "endpoints": addresses.iter().map(|a| json!({ "addresses": [a] })).collect::<Vec<_>>(),
    })
}

fn status(code: u16, reason: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": reason })
}

fn answer(code: u16, body: &Value) -> Response<Body> {
    Response::builder().status(code).body(Body::from(body.to_string().into_bytes())).expect("a response")
}

/// A request the mocked API server received.
struct Seen {
    method: http::Method,
    uri: String,
    content_type: String,
    body: Value,
}

/// The next request, within 5 s, and where to answer it.
async fn next(handle: &mut Handle) -> (Seen, tower_test::mock::SendResponse<Response<Body>>) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request within 5 s")
        .expect("the client is still there");
    let (method, uri) = (req.method().clone(), req.uri().to_string());
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let bytes = req.into_body().collect_bytes().await.expect("the request's body");
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON body") };
    (Seen { method, uri, content_type, body }, send)
}

const RW: &str = "/apis/discovery.k8s.io/v1/namespaces/triad/endpointslices/customs-rw";
const RO: &str = "/apis/discovery.k8s.io/v1/namespaces/triad/endpointslices/customs-ro";

/// Asserts a conditional read of `path`.
fn is_read(s: &Seen, path: &str) {
    assert_eq!((&s.method, s.uri.as_str()), (&http::Method::GET, path));
}

/// Asserts a server-side apply of `path` by the field manager `triad`, forced, and returns its
/// body.
fn is_apply<'a>(s: &'a Seen, path: &str) -> &'a Value {
    assert_eq!(s.method, http::Method::PATCH);
    assert!(s.uri.starts_with(&format!("{path}?")), "{}", s.uri);
    assert!(s.uri.contains("fieldManager=triad") && s.uri.contains("force=true"), "{}", s.uri);
    assert_eq!(s.content_type, "application/apply-patch+yaml");
    &s.body
}

fn endpoints(body: &Value) -> Vec<String> {
    body["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["addresses"][0].as_str().expect("an address").to_string())
        .collect()
}

/// The next request reads `path`; the API server answers `code` with `body`.
async fn serve_read(api: &mut Handle, path: &str, code: u16, body: &Value) {
    let (s, send) = next(api).await;
    is_read(&s, path);
    send.send_response(answer(code, body));
}

/// The next request applies `path`; `check` looks at what it sends, and the API server answers
/// `code` with the applied object (or, for an error code, a Status).
async fn serve_apply(api: &mut Handle, path: &str, code: u16, check: impl FnOnce(&Value)) {
    let (s, send) = next(api).await;
    let body = is_apply(&s, path).clone();
    check(&body);
    let answered = if code < 400 { body } else { status(code, "Refused") };
    send.send_response(answer(code, &answered));
}

/// No further request comes within 300 ms.
async fn nothing_more(api: &mut Handle, why: &str) {
    let more = tokio::time::timeout(Duration::from_millis(300), api.next_request()).await;
    assert!(more.is_err(), "{why}");
}

/// A slice's epoch and step annotations.
fn version(body: &Value) -> (&Value, &Value) {
    (&body["metadata"]["annotations"][EPOCH], &body["metadata"]["annotations"][STEP])
}

#[tokio::test]
async fn a_role_change_takes_the_old_primary_out_first_then_puts_the_new_one_in_and_scales() {
    let (router, _, mut api) = router();
    let server = tokio::spawn(async move {
        // Take out dc (epoch 3): the writers' slice read, then applied empty on its version.
        serve_read(&mut api, RW, 200, &slice("customs-rw", 3, "in", "10", &["10.1.0.21"])).await;
        serve_apply(&mut api, RW, 200, |body| {
            assert_eq!(endpoints(body), Vec::<String>::new(), "nobody takes writes: {body}");
            assert_eq!(version(body), (&json!("3"), &json!("out")));
            assert_eq!(body["metadata"]["resourceVersion"], "10", "conditional on what was read");
        })
        .await;
        // The readers' slice does not exist yet: created, with no condition.
        serve_read(&mut api, RO, 404, &status(404, "NotFound")).await;
        serve_apply(&mut api, RO, 201, |body| {
            assert!(body["metadata"].get("resourceVersion").is_none(), "{body}");
            assert_eq!(endpoints(body), ["10.2.0.21", "10.3.0.21"]);
        })
        .await;
        // Put ndc in at epoch 4: the writers' slice holds it alone.
        serve_read(&mut api, RW, 200, &slice("customs-rw", 3, "out", "11", &[])).await;
        serve_apply(&mut api, RW, 200, |body| {
            assert_eq!(endpoints(body), ["10.2.0.21"]);
            assert_eq!(version(body), (&json!("4"), &json!("in")));
            assert_eq!(body["metadata"]["resourceVersion"], "11");
        })
        .await;
        serve_read(&mut api, RO, 200, &slice("customs-ro", 3, "out", "12", &["10.2.0.21", "10.3.0.21"])).await;
        serve_apply(&mut api, RO, 200, |body| assert_eq!(endpoints(body), ["10.1.0.21", "10.3.0.21"])).await;
        // The application at ndc scaled up (merge patch of the scale subresource).
        let (s, send) = next(&mut api).await;
        assert_eq!(s.method, http::Method::PATCH);
        assert!(s.uri.starts_with("/apis/apps/v1/namespaces/asycuda/deployments/asycuda-ndc/scale?"), "{}", s.uri);
        assert!(s.uri.contains("fieldManager=triad"), "{}", s.uri);
        assert_eq!(s.content_type, "application/merge-patch+json");
        assert_eq!(s.body, json!({ "spec": { "replicas": 4 } }));
        send.send_response(answer(
            200,
            &json!({ "apiVersion": "autoscaling/v1", "kind": "Scale", "spec": { "replicas": 4 } }),
        ));
    });
    let out = router.apply(&route(3, RouteStep::Out, None, "dc")).await.expect("taken out");
    assert!(out.contains("customs-rw at epoch 3 (out)"), "{out}");
    let did = router.apply(&route(4, RouteStep::In, Some("ndc"), "ndc")).await.expect("put in");
    assert!(did.ends_with("Deployment asycuda/asycuda-ndc scaled to 4"), "{did}");
    server.await.expect("the API server's script");
}

#[tokio::test]
async fn a_stale_write_is_refused_and_sends_nothing() {
    let (router, _, mut api) = router();
    let server = tokio::spawn(async move {
        // A newer leader already put dr in at epoch 5.
        serve_read(&mut api, RW, 200, &slice("customs-rw", 5, "in", "30", &["10.3.0.21"])).await;
        nothing_more(&mut api, "nothing written after the stale read").await;
    });
    let e = router.apply(&route(4, RouteStep::In, Some("ndc"), "ndc")).await.expect_err("stale");
    assert!(matches!(e, RouteError::Stale { .. }), "{e}");
    assert!(e.to_string().contains("holds epoch 5 (in), newer than this write's epoch 4 (in)"), "{e}");
    server.await.expect("the API server's script");
}

#[tokio::test]
async fn a_conflict_reads_again_and_applies_on_the_new_resource_version() {
    let (router, _, mut api) = router();
    let server = tokio::spawn(async move {
        serve_read(&mut api, RW, 200, &slice("customs-rw", 3, "out", "10", &[])).await;
        // Changed in between: the API server refuses the write.
        serve_apply(&mut api, RW, 409, |body| assert_eq!(body["metadata"]["resourceVersion"], "10")).await;
        serve_read(&mut api, RW, 200, &slice("customs-rw", 3, "out", "14", &[])).await;
        serve_apply(&mut api, RW, 200, |body| {
            assert_eq!(body["metadata"]["resourceVersion"], "14", "on what was read again")
        })
        .await;
        serve_read(&mut api, RO, 404, &status(404, "NotFound")).await;
        serve_apply(&mut api, RO, 201, |_| {}).await;
        let (_, send) = next(&mut api).await;
        send.send_response(answer(200, &json!({ "apiVersion": "autoscaling/v1", "kind": "Scale" })));
    });
    router.apply(&route(4, RouteStep::In, Some("ndc"), "ndc")).await.expect("applied after the conflict");
    server.await.expect("the API server's script");
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times_then_reported() {
    let (router, _, mut api) = router();
    let server = tokio::spawn(async move {
        for _ in 0..super::apply::ATTEMPTS {
            serve_read(&mut api, RW, 503, &status(503, "ServiceUnavailable")).await;
        }
        nothing_more(&mut api, "no attempt beyond the bound").await;
    });
    let e = router.apply(&route(4, RouteStep::In, Some("ndc"), "ndc")).await.expect_err("gave up");
    assert!(e.to_string().contains("gave up after 4 attempts"), "{e}");
    server.await.expect("the API server's script");
}

#[tokio::test]
async fn the_drift_watch_lists_again_when_its_watch_ends_and_mends_a_slice_changed_meanwhile() {
    let (router, client, mut api) = router();
    // What this controller last applied: ndc in, at epoch 4.
    let ours = super::objects::slices(&router.cfg, &route(4, RouteStep::In, Some("ndc"), "ndc")).expect("slices");
    let rw: Slice = ours[0].clone();
    router.applied.lock().expect("applied").insert(rw.name.clone(), rw);
    let follow = tokio::spawn(super::watch::follow(client, router.clone()));
    let list = |rv: &str, endpoints: &[&str]| {
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSliceList",
            "metadata": { "resourceVersion": rv },
            "items": [slice("customs-rw", 4, "in", rv, endpoints)],
        })
    };
    // The first list: as applied. Then the watch, which the API server ends with 410 Gone.
    let (s, send) = next(&mut api).await;
    assert_eq!(s.method, http::Method::GET);
    assert!(s.uri.starts_with("/apis/discovery.k8s.io/v1/namespaces/triad/endpointslices?"), "{}", s.uri);
    assert!(s.uri.contains("labelSelector=endpointslice.kubernetes.io%2Fmanaged-by%3Dtriad.io"), "{}", s.uri);
    assert!(!s.uri.contains("watch=true"), "a list first: {}", s.uri);
    send.send_response(answer(200, &list("20", &["10.2.0.21"])));
    let (s, send) = next(&mut api).await;
    assert!(s.uri.contains("watch=true") && s.uri.contains("resourceVersion=20"), "{}", s.uri);
    let gone = || {
        let event = json!({ "type": "ERROR", "object": status(410, "Expired") });
        Response::builder().status(200).body(Body::from(format!("{event}\n").into_bytes())).expect("a response")
    };
    send.send_response(gone());
    // The restart: a new list, which shows the slice emptied by hand while the watch was down.
    let (s, send) = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (s, send) = next(&mut api).await;
            if !s.uri.contains("watch=true") {
                return (s, send);
            }
            // A watch resumed before the list: end it the same way.
            send.send_response(gone());
        }
    })
    .await
    .expect("listed again after the watch ended");
    assert!(s.uri.starts_with("/apis/discovery.k8s.io/v1/namespaces/triad/endpointslices?"), "{}", s.uri);
    send.send_response(answer(200, &list("25", &[])));
    // Mended: read on its condition, then applied again with ndc and the same version.
    serve_read(&mut api, RW, 200, &slice("customs-rw", 4, "in", "25", &[])).await;
    serve_apply(&mut api, RW, 200, |body| {
        assert_eq!(endpoints(body), ["10.2.0.21"]);
        assert_eq!(body["metadata"]["resourceVersion"], "25");
    })
    .await;
    follow.abort();
}
