//! The OpenAPI document, generated from the code and served at `GET /openapi.json`.
//!
//! Every route module returns a `utoipa_axum` `OpenApiRouter` and registers its handlers with
//! `routes!`, which adds a handler to axum's router and its `#[utoipa::path]` operation to the
//! document in one step. A route therefore cannot be served without being documented, and
//! [`super::app`] serves the document built by the very router it serves.
//!
//! Schemas come from `ToSchema` derives on the request and response types, which read the same
//! `serde` attributes (`rename_all`, `default`, `skip_serializing_if`, `deny_unknown_fields`)
//! that shape the JSON.

use std::sync::Arc;

use axum::Extension;
use axum::http::HeaderName;
use axum::http::header::CONTENT_TYPE;
use utoipa::OpenApi as _;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::ErrorBody;

/// The security scheme of operator routes.
pub const OPERATOR: &str = "operator_token";
/// The security scheme of tenant routes.
pub const TENANT: &str = "tenant_key";

// Descriptions of the error responses that many operations share. Each operation lists the
// statuses it can answer; these say when.

/// 400 on routes with a JSON body.
pub const BAD_JSON: &str = "The body is not a JSON object sent as `application/json`, does not fit this route \
     (a missing or unknown field, a wrong type), or a field is invalid (`invalid_request`)";
/// 401 on every authenticated route.
pub const UNAUTHORIZED: &str =
    "No `Authorization: Bearer` header, a malformed one, or a token that matches nothing (`unauthorized`)";
/// 403 on operator routes.
pub const OPERATOR_ONLY: &str = "A tenant API key was sent to an operator route (`forbidden`)";
/// 403 on tenant routes.
pub const TENANT_ONLY: &str =
    "The operator token was sent to a tenant route (`forbidden`), or the tenant is disabled (`tenant_disabled`)";
/// 413 on routes with a JSON body.
pub const TOO_LARGE: &str = "The body is larger than the daemon's JSON limit, `max_json_bytes` (1 MiB unless the operator changed it) (`too_large`)";
/// 500 on every route that reads the store.
pub const INTERNAL: &str = "The daemon failed (`internal`); the message is generic and the detail is in its log";

// The statuses every tenant (or operator) route answers besides its own, declared once and
// listed in each operation's `responses` by name.

/// 401, 403 and 500, which every tenant route can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum TenantErrors {
    #[response(status = 401, description = UNAUTHORIZED)]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = TENANT_ONLY)]
    Forbidden(ErrorBody),
    #[response(status = 500, description = INTERNAL)]
    Internal(ErrorBody),
}

/// 401, 403 and 500, which every operator route can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum OperatorErrors {
    #[response(status = 401, description = UNAUTHORIZED)]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = OPERATOR_ONLY)]
    Forbidden(ErrorBody),
    #[response(status = 500, description = INTERNAL)]
    Internal(ErrorBody),
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Sluice API",
        description = "Sluice polls an HTTP API on a schedule for each tenant project, transforms every response \
            in the tenant's WebAssembly component, and delivers the records to the tenant's Kinesis stream.\n\n\
            Every error answers with the same body, `{\"error\": {\"code\", \"message\"}}` (`ErrorBody`). \
            Credentials are bearer tokens: the operator's token for `/v1/tenants`, a tenant's API key for \
            everything else under `/v1`. Probes, `/metrics` and this document need none."
    ),
    tags(
        (name = "tenants", description = "The operator onboards tenants and manages their tiers, quotas and keys."),
        (name = "plugins", description = "Tenants upload WebAssembly components and try them on sample responses."),
        (name = "projects", description = "Tenants configure what is polled, how often, and where records go."),
        (name = "operations", description = "Probes, metrics and this document, for machines; no credentials."),
        (name = "cluster", description = "The operator sees the hosts that share the store's projects, and their leases."),
    ),
    components(schemas(super::error::ErrorBody))
)]
struct ApiDoc;

/// The document's parts that no route contributes: information, tags, and the two bearer
/// schemes, whose descriptions say which token is which.
pub fn base() -> OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    let bearer = |description: &str| {
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build())
    };
    components.add_security_scheme(
        OPERATOR,
        bearer(
            "The operator's token (`admin_token` in the daemon's configuration, or `SLUICE_ADMIN_TOKEN`), sent as \
             `Authorization: Bearer <token>`. Only the tenant routes under `/v1/tenants` take it; a tenant route \
             answers it with 403.",
        ),
    );
    components.add_security_scheme(
        TENANT,
        bearer(
            "A tenant's API key, issued when the operator creates the tenant or rotates its key and shown only \
             then, sent as `Authorization: Bearer <key>`. Every route under `/v1` except `/v1/tenants` takes it; \
             an operator route answers it with 403, and a disabled tenant's key gets 403 `tenant_disabled`.",
        ),
    );
    doc
}

/// The route that serves the document.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(document))
}

/// The serialized document, shared by every request (it is the same for the life of the router).
#[derive(Clone)]
pub struct Document(Arc<str>);

impl Document {
    pub fn new(doc: &OpenApi) -> Self {
        // The document is built from static annotations, so serializing it cannot fail.
        Self(Arc::from(doc.to_pretty_json().expect("the OpenAPI document serializes")))
    }
}

/// This OpenAPI document
///
/// Every route the daemon serves, with its parameters, bodies, responses and credentials,
/// generated from the code. Needs no credentials.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = serde_json::Value))
)]
async fn document(Extension(Document(json)): Extension<Document>) -> ([(HeaderName, &'static str); 1], String) {
    ([(CONTENT_TYPE, "application/json")], json.to_string())
}

#[cfg(test)]
mod tests {
    /// Routes reach axum only through `routes!`, which documents them. A route added with
    /// `.route(...)`, a nested service, or an axum `MethodRouter` would be served without an
    /// OpenAPI operation, so none of them may appear in the API's code. The console's static
    /// files (`console.rs`) are the one exception: they are not part of the JSON API, take no
    /// credentials and read no state, and `tests/e2e/authz.rs` pins what they answer.
    #[test]
    fn every_route_is_registered_with_its_operation() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let forbidden = [".route(", ".route_service(", ".nest(", ".nest_service(", "routing::", "MethodRouter"];
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("console.rs") {
                continue;
            }
            files += 1;
            let source = std::fs::read_to_string(&path).unwrap();
            // This test names the forbidden calls itself; only the code before it counts.
            let code = source.split("#[cfg(test)]").next().unwrap();
            for pattern in forbidden {
                assert!(
                    !code.contains(pattern),
                    "{} uses `{pattern}`: register routes with `routes!` so that they are documented",
                    path.display()
                );
            }
        }
        assert!(files >= 9, "the API's sources are in {}", dir.display());
    }
}
