//! The HTTP surface: authentication, the fixed documents (version, health, discovery,
//! OpenAPI) and the generic resource handler that turns a request into a registry call and
//! the result into kube-apiserver's response shape (object, List, Table, Status, watch stream).

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use api::deletion::{Propagation, PropagationChoice};
use api::tables::IncludeObject;

use crate::error::{qualified, ApiError};
use crate::objects::{
    api_version, DeleteOptions, Deleted, PagedList, Part, PatchType, Selectors, WriteOptions,
    Written,
};
use crate::paging::ListMode;
use crate::request::{decode_body, parse_resource_path, Query, ResourcePath, Wants};
use crate::state::AppState;
use crate::watch::{self, Format, WatchRequest};
use rbac::User;

const TABLE_CT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
/// kube-apiserver's request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/metrics", get(serve_metrics))
        .route("/api", get(api_root))
        .route("/apis", get(apis_root))
        .route("/api/v1", get(core_v1))
        .route("/apis/{group}", get(api_group))
        .route("/apis/{group}/{version}", get(group_version))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_index))
        .route(
            "/apis/metrics.k8s.io/v1beta1/nodes",
            get(crate::resource_metrics::list_nodes),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/nodes/{name}",
            get(crate::resource_metrics::get_node),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/pods",
            get(crate::resource_metrics::list_all_pods),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods",
            get(crate::resource_metrics::list_namespaced_pods),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}",
            get(crate::resource_metrics::get_pod),
        )
        .route("/openapi/v3/{*path}", get(openapi_doc))
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/log",
            get(crate::logs::route).fallback(resource),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/exec",
            get(crate::streaming::exec).post(crate::streaming::exec),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/attach",
            get(crate::streaming::attach).post(crate::streaming::attach),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
            get(crate::streaming::portforward).post(crate::streaming::portforward),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            review(),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            review(),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            review(),
        )
        .route(
            "/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews",
            review(),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            review(),
        )
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            axum::routing::post(crate::token_reviews::create)
                .fallback(crate::reviews::method_not_allowed),
        )
        .fallback(resource)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_request,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(tlsserve::catch_panic))
        .with_state(state)
}

/// A review endpoint: POST creates (answers) one; any other method is refused as upstream.
fn review() -> axum::routing::MethodRouter<AppState> {
    axum::routing::post(crate::reviews::create).fallback(crate::reviews::method_not_allowed)
}

/// Bearer-token authentication: the admin token, a bootstrap token (`<id>.<secret>`, checked
/// against its Secret), or a ServiceAccount token (a signed JWT
/// whose account, and bound pod, still exist). `/version` and the health endpoints stay
/// public, as kube-apiserver's `system:public-info-viewer` role makes them. An authenticated
/// request is then authorized (RBAC; the admin token is `system:masters`) and who the caller
/// is goes into the request's extensions.
async fn auth(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let public = matches!(
        req.uri().path(),
        "/version" | "/healthz" | "/livez" | "/readyz"
    );
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let no_credentials = bearer.is_none()
        && req
            .extensions()
            .get::<tlsserve::PeerCertificates>()
            .is_none();
    let client_cert = req
        .extensions()
        .get::<tlsserve::PeerCertificates>()
        .and_then(|p| p.0.first())
        .map(|leaf| nodetrust::clientcert::identity(leaf.as_ref()));
    let user = match bearer {
        // kube-apiserver asks the x509 authenticator first: a verified client certificate
        // names the user (CN) and groups (O).
        _ if client_cert.is_some() => client_cert.flatten().map(|(name, mut groups)| {
            groups.push("system:authenticated".into());
            User {
                name,
                groups,
                ..User::default()
            }
        }),
        Some(t) if crate::admin::token_eq(t.as_bytes(), st.admin_token.as_bytes()) => {
            Some(crate::admin::user())
        }
        Some(t) if crate::bootstrap_tokens::BootstrapToken::parse(&t).is_some() => {
            bootstrap_user(&st, &t).await
        }
        Some(t) if !t.is_empty() => {
            match crate::serviceaccounts::authenticate(
                st.registry.store.as_ref(),
                &st.tokens,
                &t,
                jiff::Timestamp::now(),
            )
            .await
            {
                Ok(user) => Some(user),
                Err(e) => {
                    tracing::debug!(error = %crate::error::error_chain(&e), "bearer token refused");
                    None
                }
            }
        }
        _ => None,
    };
    match user {
        Some(user) => {
            let user = match st.authorizer.acting_user(user, req.headers()) {
                Ok(u) => u,
                Err(e) => return ApiError::from(e).into_response(),
            };
            let uri = req.uri();
            if let Err(e) =
                st.authorizer
                    .authorize(&user, req.method().as_str(), uri.path(), uri.query())
            {
                return ApiError::from(e).into_response();
            }
            if let Err(e) = node_restriction(&st, &user, req.method().as_str(), uri).await {
                return e.into_response();
            }
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        None if public => next.run(req).await,
        // A request without credentials is `system:anonymous`, and goes on where RBAC lets
        // anonymous users (kubeadm's `cluster-info` in kube-public); elsewhere it is 401, as
        // before anonymous access existed.
        None if no_credentials => {
            let anonymous = User::anonymous();
            let uri = req.uri();
            match st.authorizer.authorize(
                &anonymous,
                req.method().as_str(),
                uri.path(),
                uri.query(),
            ) {
                Ok(()) => {
                    req.extensions_mut().insert(anonymous);
                    next.run(req).await
                }
                Err(_) => ApiError::Unauthorized.into_response(),
            }
        }
        None => ApiError::Unauthorized.into_response(),
    }
}

/// The Node authorizer's checks that need stored objects: a node changes the status of, or
/// deletes, only pods bound to it, and reads a Secret, ConfigMap, claim or ServiceAccount
/// only while one of its pods uses it.
async fn node_restriction(
    st: &AppState,
    user: &User,
    method: &str,
    uri: &Uri,
) -> Result<(), ApiError> {
    let a = rbac::Attributes::from_request(user.clone(), method, uri.path(), uri.query());
    if let Some((node, kind)) = rbac::node_graph::check(&a) {
        let pods = st
            .registry
            .store
            .list("", "pods", Some(&a.namespace))
            .await
            .map_err(ApiError::Store)?;
        let used = pods
            .items
            .iter()
            .any(|p| rbac::node_graph::pod_uses(p, node, kind, &a.name));
        if !used {
            return Err(ApiError::Forbidden {
                resource: kind.resource().into(),
                group: String::new(),
                name: a.name.clone(),
                detail: rbac::node_graph::refusal(&a, node),
            });
        }
    }
    let Some(node) = rbac::node::pod_binding_check(&a) else {
        return Ok(());
    };
    let pod =
        crate::serviceaccounts::get(st.registry.store.as_ref(), "pods", &a.namespace, &a.name)
            .await?;
    let bound = pod
        .as_ref()
        .and_then(|p| p.pointer("/spec/nodeName"))
        .and_then(Value::as_str);
    match pod {
        // A pod that is gone answers 404 from the handler.
        None => Ok(()),
        Some(_) if bound == Some(node) => Ok(()),
        Some(_) => Err(ApiError::Forbidden {
            resource: "pods".into(),
            group: String::new(),
            name: a.name.clone(),
            detail: rbac::node::pod_refusal(node, &a),
        }),
    }
}

/// The user of a bearer token shaped as a bootstrap token; `None` (401) when its Secret
/// does not make it valid.
async fn bootstrap_user(st: &AppState, bearer: &str) -> Option<User> {
    let token = crate::bootstrap_tokens::BootstrapToken::parse(bearer)?;
    let checked = crate::bootstrap_tokens::authenticate(
        st.registry.store.as_ref(),
        &token,
        jiff::Timestamp::now(),
    )
    .await;
    checked
        .inspect_err(|e| {
            tracing::debug!(error = %crate::error::error_chain(e), "bootstrap token refused");
        })
        .ok()
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0",
            "gitCommit": "peapod",
            "gitTreeState": "clean",
            "buildDate": "2025-04-23T00:00:00Z",
            "goVersion": "go1.24.2",
            "compiler": "gc",
            "platform": format!("linux/{}", go_arch()),
        }),
    )
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn ok() -> &'static str {
    "ok"
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

fn discovery_response(headers: &HeaderMap, core: bool, legacy: Value) -> Response {
    match api::discovery::aggregated_version(accept(headers)) {
        Some(v) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, api::discovery::content_type(v))],
            api::discovery::aggregated(core, v).to_string(),
        )
            .into_response(),
        None => json_response(StatusCode::OK, &legacy),
    }
}

async fn api_root(State(st): State<AppState>, headers: HeaderMap) -> Response {
    discovery_response(
        &headers,
        true,
        api::discovery::api_versions(&st.server_address),
    )
}

async fn apis_root(headers: HeaderMap) -> Response {
    discovery_response(&headers, false, api::discovery::api_group_list())
}

async fn core_v1() -> Response {
    match api::discovery::resource_list("", "v1") {
        Some(v) => json_response(StatusCode::OK, &v),
        None => ApiError::PathNotFound.into_response(),
    }
}

async fn api_group(axum::extract::Path(group): axum::extract::Path<String>) -> Response {
    match api::discovery::api_group_doc(&group) {
        Some(v) => json_response(StatusCode::OK, &v),
        None => ApiError::PathNotFound.into_response(),
    }
}

async fn group_version(
    axum::extract::Path((group, version)): axum::extract::Path<(String, String)>,
) -> Response {
    match api::discovery::resource_list(&group, &version) {
        Some(v) => json_response(StatusCode::OK, &v),
        None => ApiError::PathNotFound.into_response(),
    }
}

/// `GET /openapi/v2`: the protobuf form when the client asks for it (client-go's
/// `OpenAPISchema`, kubectl ≤ 1.28), else JSON.
async fn openapi_v2(headers: HeaderMap) -> Response {
    let proto = openapi_docs::v2proto::MEDIA_TYPE;
    if accept(&headers).is_some_and(|a| a.contains("application/com.github.proto-openapi.spec.v2"))
    {
        let body = Bytes::from_static(openapi_docs::v2proto::served());
        return (StatusCode::OK, [(header::CONTENT_TYPE, proto)], body).into_response();
    }
    json_response(StatusCode::OK, openapi_docs::v2::document())
}

async fn openapi_index() -> Response {
    json_response(StatusCode::OK, &openapi_docs::index())
}

async fn openapi_doc(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    match openapi_docs::document(&path) {
        Some(v) => json_response(StatusCode::OK, &v),
        None => ApiError::PathNotFound.into_response(),
    }
}

/// Every `/api/v1/...` and `/apis/<g>/<v>/...` resource request.
async fn resource(
    State(st): State<AppState>,
    user: Option<axum::Extension<User>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::RequestEntityTooLarge { limit: MAX_BODY }.into_response()
        }
        Err(e) => return ApiError::bad_request(e.body_text()).into_response(),
    };
    let user = user.map(|axum::Extension(u)| u);
    match handle(&st, user.as_ref(), &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

pub(crate) fn include_object(q: &Query) -> Result<IncludeObject, ApiError> {
    match q.get("includeObject") {
        None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
        Some("None") => Ok(IncludeObject::None),
        Some("Object") => Ok(IncludeObject::Object),
        Some(o) => Err(ApiError::bad_request(format!(
            "includeObject must be one of None, Metadata, Object; got {o:?}"
        ))),
    }
}

pub(crate) fn write_options(q: &Query) -> Result<WriteOptions, ApiError> {
    Ok(WriteOptions {
        dry_run: q.dry_run()?,
        field_validation: q.field_validation()?,
        field_manager: q.get("fieldManager").map(str::to_string),
        guard: None,
        default_manager: None,
        force: q.get("force") == Some("true"),
    })
}

/// kube-apiserver's `ValidatePatchOptions`: an apply names its manager, only an apply may
/// say `force`, and a manager name is at most 128 printable characters.
fn validate_patch_options(q: &Query, pt: PatchType) -> Result<(), ApiError> {
    let mut errs = api::field_errors::FieldErrors::default();
    let manager = q.get("fieldManager").unwrap_or("");
    if pt == PatchType::Apply {
        if manager.is_empty() {
            errs.required("fieldManager", "is required for apply patch");
        }
    } else if q.get("force").is_some() {
        errs.forbidden("force", "may not be specified for non-apply patch");
    }
    if manager.len() > 128 {
        errs.too_long("fieldManager", 128);
    } else if manager.chars().any(char::is_control) {
        errs.invalid(
            "fieldManager",
            &Value::String(manager.to_string()),
            "must only contain printable characters",
        );
    }
    errs.finish().map_err(|causes| ApiError::Invalid {
        kind: "PatchOptions".into(),
        group: "meta.k8s.io".into(),
        name: String::new(),
        causes,
    })
}

/// [`write_options`] with the manager a request without `fieldManager` writes as: its
/// User-Agent up to the first `/` (kube-apiserver's default).
fn write_options_from(q: &Query, headers: &HeaderMap) -> Result<WriteOptions, ApiError> {
    let mut opts = write_options(q)?;
    opts.default_manager = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    Ok(opts)
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn object_response(code: StatusCode, w: &Written) -> Response {
    with_warnings(json_response(code, &w.object), &w.warnings)
}

/// A Table of `objs`; `metadata` is the list's (resourceVersion, continue, remaining count).
fn table_response(
    p: &ResourcePath,
    objs: &[Value],
    q: &Query,
    metadata: &Value,
) -> Result<Response, ApiError> {
    let rv = metadata
        .get("resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut t = api::tables::table_for(
        p.info,
        objs,
        include_object(q)?,
        true,
        rv,
        jiff::Timestamp::now(),
    );
    t["metadata"] = metadata.clone();
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, TABLE_CT)],
        t.to_string(),
    )
        .into_response())
}

fn delete_options(q: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let body = if body.iter().any(|b| !b.is_ascii_whitespace()) {
        Some(
            serde_json::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?,
        )
    } else {
        None
    };
    delete_options_from(q, body.as_ref())
}

/// DeleteOptions from the query and a decoded body (a DELETE's, or an Eviction's
/// `deleteOptions`); the body wins.
fn delete_options_from(q: &Query, body: Option<&Value>) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions {
        grace_period_seconds: q.int("gracePeriodSeconds")?,
        dry_run: q.dry_run()?,
        ..Default::default()
    };
    let mut policy = q.get("propagationPolicy").map(str::to_string);
    let mut orphan = match q.get("orphanDependents") {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "invalid value for orphanDependents: {o:?}, expected a boolean"
            )))
        }
    };
    if let Some(v) = body.filter(|v| !v.is_null()) {
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            opts.grace_period_seconds = Some(g);
        }
        if let Some(uid) = v.pointer("/preconditions/uid").and_then(Value::as_str) {
            opts.preconditions.uid = Some(uid.to_string());
        }
        if let Some(rv) = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            opts.preconditions.resource_version = Some(rv.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid precondition resourceVersion {rv:?}"))
            })?);
        }
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "All"))
        {
            opts.dry_run = true;
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            policy = Some(p.to_string());
        }
        if let Some(o) = v.get("orphanDependents").and_then(Value::as_bool) {
            orphan = Some(o);
        }
    }
    opts.propagation = propagation(policy.as_deref(), orphan)?;
    Ok(opts)
}

/// The DeleteOptions of a policy/v1 Eviction for the pod `name` in `namespace` (upstream's
/// checks of the body, and `propagateDryRun`: the create's `dryRun` applies when the
/// Eviction's options name none).
fn eviction_options(
    q: &Query,
    name: &str,
    namespace: Option<&str>,
    eviction: &Value,
) -> Result<DeleteOptions, ApiError> {
    if let Some(k) = eviction.get("kind").and_then(Value::as_str) {
        if !k.is_empty() && k != "Eviction" {
            return Err(ApiError::bad_request(format!("not a Eviction object: {k}")));
        }
    }
    if eviction.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let body_ns = eviction
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    if body_ns.is_some_and(|n| Some(n) != namespace) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let body = eviction.get("deleteOptions");
    let mut opts = delete_options_from(&Query::default(), body)?;
    let body_dry = body
        .and_then(|b| b.get("dryRun"))
        .and_then(Value::as_array)
        .is_some_and(|d| !d.is_empty());
    let query_dry = q.dry_run()?;
    if body_dry && query_dry != opts.dry_run && q.get("dryRun").is_some() {
        return Err(ApiError::bad_request(
            "DryRun in DeleteOptions does not match DryRun in CreateOptions",
        ));
    }
    opts.dry_run = opts.dry_run || query_dry;
    Ok(opts)
}

/// `ValidateDeleteOptions` for the dependents' part.
fn propagation(
    policy: Option<&str>,
    orphan_dependents: Option<bool>,
) -> Result<PropagationChoice, ApiError> {
    let mut errs = api::validation::FieldErrors::default();
    let parsed = match policy {
        None => None,
        Some(p) => {
            let parsed = Propagation::parse(p);
            if parsed.is_none() {
                errs.not_supported("propagationPolicy", &Value::from(p), Propagation::NAMES);
            }
            if orphan_dependents.is_some() {
                errs.invalid(
                    "propagationPolicy",
                    &Value::from(p),
                    "orphanDependents and deletionPropagation cannot be both set",
                );
            }
            parsed
        }
    };
    errs.finish().map_err(|causes| ApiError::Invalid {
        kind: "DeleteOptions".into(),
        group: "meta.k8s.io".into(),
        name: String::new(),
        causes,
    })?;
    Ok(PropagationChoice {
        policy: parsed,
        orphan_dependents,
    })
}

/// The kind's warning for a DELETE that leaves the dependents to its default policy.
fn delete_warnings(info: &api::resources::ResourceInfo, opts: &DeleteOptions) -> Vec<String> {
    match info.strategy.implicit_propagation_warning() {
        Some(w) if !opts.propagation.is_explicit() => vec![w.to_string()],
        _ => Vec::new(),
    }
}

/// The Status kube-apiserver answers for a removed non-pod object.
fn delete_success(p: &ResourcePath, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "group": p.info.group,
            "kind": p.info.plural,
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        },
    })
}

/// The patch type the Content-Type names.
fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    PatchType::from_content_type(ct).ok_or_else(|| ApiError::UnsupportedMediaType {
        content_type: ct.to_string(),
    })
}

/// The verb a request on the resource itself (no subresource) is, as discovery lists verbs.
fn verb_of(method: &Method, p: &ResourcePath, q: &Query) -> &'static str {
    let named = p.name.is_some();
    match *method {
        Method::GET | Method::HEAD if p.watch_prefix || q.flag("watch") => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    }
}

async fn handle(
    st: &AppState,
    user: Option<&User>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = parse_resource_path(uri.path())?;
    let q = Query::parse(uri.query())?;
    let guard = crate::escalation::guard(&st.authorizer, user, p.info);
    let write_options_from = |q: &Query, headers: &HeaderMap| {
        write_options_from(q, headers).map(|o| WriteOptions {
            guard: guard.clone(),
            ..o
        })
    };
    let reg = &st.registry;
    let info = p.info;
    let ns = p.namespace.as_deref();
    let wants = crate::request::wants(accept(headers));
    let sub = p.subresource.as_deref();
    if sub.is_none() && !info.verbs.contains(&verb_of(method, &p, &q)) {
        return Err(ApiError::MethodNotAllowed);
    }
    match (method.clone(), p.name.as_deref(), sub) {
        (Method::GET, name, None) if p.watch_prefix || q.flag("watch") => {
            let selectors = Selectors::parse(
                info,
                q.get("labelSelector"),
                q.get("fieldSelector"),
                name.map(str::to_string),
            )?;
            let timeout = match q.int("timeoutSeconds")? {
                Some(t) if t > 0 => std::time::Duration::from_secs(t.unsigned_abs()),
                _ => watch::default_timeout(),
            };
            let format = match wants {
                Wants::Table => Format::Table(include_object(&q)?),
                Wants::Json => Format::Json,
            };
            let req = WatchRequest {
                info,
                namespace: p.namespace.clone(),
                selectors,
                resource_version: q.get("resourceVersion").map(str::to_string),
                timeout,
                bookmarks: q.flag("allowWatchBookmarks"),
                format,
            };
            let stream = watch::start(reg.clone(), req).await?;
            let ct = match format {
                Format::Table(_) => TABLE_CT,
                Format::Json => "application/json",
            };
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, ct)],
                Body::from_stream(stream),
            )
                .into_response())
        }
        (Method::GET, None, None) => {
            let selectors =
                Selectors::parse(info, q.get("labelSelector"), q.get("fieldSelector"), None)?;
            let mode =
                ListMode::from_query(q.int("limit")?, q.get("continue"), q.get("resourceVersion"))?;
            let list = match mode {
                ListMode::All => {
                    let (items, rv) = reg.list(info, ns, &selectors).await?;
                    PagedList {
                        items,
                        resource_version: rv,
                        continue_token: None,
                        remaining: None,
                    }
                }
                ListMode::Page {
                    limit,
                    continue_from,
                } => {
                    reg.list_page(info, ns, &selectors, limit, continue_from.as_ref())
                        .await?
                }
            };
            let rv = list.resource_version.to_string();
            let mut metadata = json!({"resourceVersion": rv});
            if let Some(token) = &list.continue_token {
                metadata["continue"] = json!(token);
            }
            if let Some(n) = list.remaining {
                metadata["remainingItemCount"] = json!(n);
            }
            if wants == Wants::Table {
                return table_response(&p, &list.items, &q, &metadata);
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": info.list_kind,
                    "apiVersion": api_version(info),
                    "metadata": metadata,
                    "items": list.items,
                }),
            ))
        }
        (Method::GET, Some(name), _) if Part::of(info, sub).is_some() => {
            let obj = reg.get(info, ns, name).await?;
            if wants == Wants::Table && sub.is_none() {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let metadata = json!({"resourceVersion": rv});
                return table_response(&p, std::slice::from_ref(&obj), &q, &metadata);
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        (Method::GET, Some(name), Some("scale")) => Ok(json_response(
            StatusCode::OK,
            &reg.get_scale(info, ns, name).await?,
        )),
        (Method::PUT, Some(name), Some("scale")) => {
            let body = decode_body(headers, &body)?;
            let scale = reg
                .update_scale(info, ns, name, body, &write_options_from(&q, headers)?)
                .await?;
            Ok(json_response(StatusCode::OK, &scale))
        }
        (Method::PATCH, Some(name), Some("scale")) => {
            let pt = patch_type(headers)?;
            let scale = reg
                .patch_scale(info, ns, name, pt, &body, &write_options_from(&q, headers)?)
                .await?;
            Ok(json_response(StatusCode::OK, &scale))
        }
        (Method::POST, None, None) => {
            let mut body = decode_body(headers, &body)?;
            let requester = user.cloned().unwrap_or_else(User::anonymous);
            info.strategy
                .set_requester(&mut body, &user_info(&requester));
            let w = reg
                .create(info, ns, body, &write_options_from(&q, headers)?)
                .await?;
            Ok(object_response(StatusCode::CREATED, &w))
        }
        (Method::POST, Some(name), Some("binding")) if info.subresource("binding").is_some() => {
            let body = decode_body(headers, &body)?;
            let target = body
                .pointer("/target/name")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ApiError::Invalid {
                    kind: "Binding".into(),
                    group: String::new(),
                    name: name.to_string(),
                    causes: vec![api::validation::FieldError {
                        field: "target.name".into(),
                        reason: api::validation::CauseReason::FieldValueRequired,
                        message: "target.name: Required value".into(),
                    }],
                })?;
            reg.bind(ns.unwrap_or(""), name, target, q.dry_run()?)
                .await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (Method::POST, Some(name), Some("eviction")) if info.subresource("eviction").is_some() => {
            let body = decode_body(headers, &body)?;
            let opts = eviction_options(&q, name, ns, &body)?;
            reg.evict(info, ns.unwrap_or(""), name, &opts).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (Method::POST, Some(name), Some("token")) if info.subresource("token").is_some() => {
            let body = decode_body(headers, &body)?;
            let resp = crate::serviceaccounts::request_token(
                reg.store.as_ref(),
                &st.tokens,
                ns.unwrap_or(""),
                name,
                &body,
            )
            .await?;
            Ok(json_response(StatusCode::CREATED, &resp))
        }
        (Method::PUT, Some(name), _) if Part::of(info, sub).is_some() => {
            let body = decode_body(headers, &body)?;
            let part = Part::of(info, sub).unwrap_or(Part::Object);
            let w = reg
                .update(
                    info,
                    ns,
                    name,
                    body,
                    part,
                    &write_options_from(&q, headers)?,
                )
                .await?;
            Ok(object_response(StatusCode::OK, &w))
        }
        (Method::PUT, Some(name), Some("finalize")) if info.subresource("finalize").is_some() => {
            let body = decode_body(headers, &body)?;
            let w = reg.finalize_namespace(name, body, q.dry_run()?).await?;
            Ok(json_response(StatusCode::OK, &w))
        }
        (Method::PATCH, Some(name), _) if Part::of(info, sub).is_some() => {
            let part = Part::of(info, sub).unwrap_or(Part::Object);
            let pt = patch_type(headers)?;
            validate_patch_options(&q, pt)?;
            let opts = write_options_from(&q, headers)?;
            let w = reg.patch(info, ns, name, pt, &body, part, &opts).await?;
            let code = if w.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(object_response(code, &w))
        }
        (Method::DELETE, Some(name), None) => {
            let opts = delete_options(&q, &body)?;
            let resp = match reg.delete(info, ns, name, &opts).await? {
                Deleted::Pending(obj) => json_response(StatusCode::OK, &obj),
                Deleted::Gone(obj) if info.strategy.return_deleted_object() => {
                    json_response(StatusCode::OK, &obj)
                }
                Deleted::Gone(obj) => json_response(StatusCode::OK, &delete_success(&p, &obj)),
            };
            Ok(with_warnings(resp, &delete_warnings(info, &opts)))
        }
        (Method::DELETE, None, None) => {
            let opts = delete_options(&q, &body)?;
            let selectors =
                Selectors::parse(info, q.get("labelSelector"), q.get("fieldSelector"), None)?;
            let (items, rv) = reg.list(info, ns, &selectors).await?;
            let mut deleted = Vec::new();
            for obj in items {
                let name = crate::objects::name_of(&obj).to_string();
                let obj_ns = obj
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                match reg.delete(info, obj_ns.as_deref(), &name, &opts).await {
                    Ok(Deleted::Pending(o) | Deleted::Gone(o)) => deleted.push(o),
                    // Someone else removed it in between: that is what we wanted.
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let resp = json_response(
                StatusCode::OK,
                &json!({
                    "kind": info.list_kind,
                    "apiVersion": api_version(info),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": deleted,
                }),
            );
            Ok(with_warnings(resp, &delete_warnings(info, &opts)))
        }
        _ => {
            tracing::debug!(%method, path = %uri.path(), resource = %qualified(info), "method not allowed");
            Err(ApiError::MethodNotAllowed)
        }
    }
}

/// The requester as a `UserInfo` (what a CertificateSigningRequest records).
fn user_info(user: &User) -> Value {
    json!({
        "username": user.name,
        "uid": user.uid,
        "groups": user.groups,
        "extra": user.extra,
    })
}

/// Middleware: counts and times each resource request, refused ones included.
async fn record_request(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let labels = crate::request_metrics::ApiMetrics::request_labels(&req);
    let method = req.method().clone();
    let uri = req.uri().clone();
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    // kube-apiserver's httplog (-v=3): one line per request once its response starts, so a
    // watch or exec is logged when it begins. Off unless `PEAPOD_LOG` enables the target.
    tracing::debug!(
        target: "peapod::access",
        %method,
        uri = %uri,
        status = resp.status().as_u16(),
        latency_ms = start.elapsed().as_secs_f64() * 1e3,
    );
    st.metrics.observe(labels, start, resp.status().as_u16());
    resp
}

/// `GET /metrics`.
async fn serve_metrics(State(st): State<AppState>) -> Response {
    st.metrics.render(st.registry.store.as_ref()).await
}
