//! Bearer-token authentication of the control API, as a tower layer on the gRPC server.
//!
//! When tokens are configured, every call to `rebake.control.v1.Control` carries
//! `authorization: Bearer <token>`. The token is compared with every configured secret in
//! constant time (no early exit on the first match either), so timing tells nothing about
//! how much of a guess was right. Without a valid token: UNAUTHENTICATED; a read-only token
//! calling an admin RPC (`TriggerRebuild`, `Pause`, `Resume`): PERMISSION_DENIED. The token's
//! name (never the token) goes into the request's extensions as [`Caller`], where
//! `operator::caller` reads it, and into logs.
//!
//! `grpc.health.v1` and server reflection stay open: load balancers and `grpcurl list` need
//! no token. Every other path (including unknown ones) needs one. With no tokens configured
//! nothing is checked.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use subtle::ConstantTimeEq as _;

/// The control service's path prefix.
const CONTROL_PREFIX: &str = "/rebake.control.v1.Control/";

/// RPCs that change something: admin tokens only.
const ADMIN_METHODS: [&str; 3] = ["TriggerRebuild", "Pause", "Resume"];

/// Services that answer without a token.
const OPEN_PREFIXES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The read-only RPCs.
    Read,
    /// Every RPC.
    Admin,
}

/// One accepted bearer token.
#[derive(Clone)]
pub struct Token {
    /// Who holds it (shown in logs and as `requested_by`).
    pub name: String,
    /// The token itself.
    pub secret: String,
    /// What it may do.
    pub role: Role,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

/// The authenticated caller, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

/// Checks one request: `Ok(None)` when it needs no token (auth off, or an open service),
/// `Ok(Some(caller))` when the token is valid and allowed, the status to answer otherwise.
pub(crate) fn check(
    tokens: &[Token],
    path: &str,
    authorization: Option<&http::HeaderValue>,
) -> Result<Option<Caller>, tonic::Status> {
    if tokens.is_empty() || OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
        return Ok(None);
    }
    let presented = authorization
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty());
    let Some(presented) = presented else {
        tracing::debug!(path, "control call without a bearer token refused");
        return Err(tonic::Status::unauthenticated(
            "a bearer token is required (authorization: Bearer <token>)",
        ));
    };
    // Compare against every token, whatever matched before.
    let mut found: Option<&Token> = None;
    for token in tokens {
        if bool::from(token.secret.as_bytes().ct_eq(presented.as_bytes())) && found.is_none() {
            found = Some(token);
        }
    }
    let Some(token) = found else {
        tracing::info!(path, "control call with an unknown bearer token refused");
        return Err(tonic::Status::unauthenticated("invalid bearer token"));
    };
    let method = path.strip_prefix(CONTROL_PREFIX).unwrap_or_default();
    if token.role != Role::Admin && ADMIN_METHODS.contains(&method) {
        tracing::info!(path, token = %token.name, "read-only token refused an admin call");
        return Err(tonic::Status::permission_denied(format!(
            "token {} is read-only; {method} needs an admin token",
            token.name
        )));
    }
    Ok(Some(Caller {
        name: token.name.clone(),
        role: token.role,
    }))
}

/// The layer: put it on the `tonic::transport::Server`.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    tokens: Arc<[Token]>,
}

impl AuthLayer {
    /// Checks calls against `tokens` (none = no authentication).
    pub fn new(tokens: Vec<Token>) -> Self {
        Self { tokens: tokens.into() }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    tokens: Arc<[Token]>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Auth<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        match check(
            &self.tokens,
            request.uri().path(),
            request.headers().get(http::header::AUTHORIZATION),
        ) {
            Ok(Some(caller)) => {
                request.extensions_mut().insert(caller);
            }
            Ok(None) => {}
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        }
        // The clone is ready only after poll_ready; call the one that was polled.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{Layer as _, ServiceExt as _};

    use super::*;

    fn tokens() -> Vec<Token> {
        vec![
            Token {
                name: "dash".into(),
                secret: "read-secret".into(),
                role: Role::Read,
            },
            Token {
                name: "ops".into(),
                secret: "admin-secret".into(),
                role: Role::Admin,
            },
        ]
    }

    /// Answers 200 with the caller's name in a header (empty when none).
    fn echo() -> impl tower::Service<
        http::Request<()>,
        Response = http::Response<String>,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(|request: http::Request<()>| async move {
            let caller = request
                .extensions()
                .get::<Caller>()
                .map(|caller| caller.name.clone())
                .unwrap_or_default();
            Ok::<_, Infallible>(http::Response::new(caller))
        })
    }

    async fn call(tokens: Vec<Token>, path: &str, authorization: Option<&str>) -> (Option<tonic::Code>, String) {
        let service = AuthLayer::new(tokens).layer(echo());
        let mut request = http::Request::builder().uri(format!("http://localhost{path}"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = service.oneshot(request.body(()).unwrap()).await.unwrap();
        let code = tonic::Status::from_header_map(response.headers()).map(|status| status.code());
        (code, response.into_body())
    }

    const LIST: &str = "/rebake.control.v1.Control/ListImages";
    const PAUSE: &str = "/rebake.control.v1.Control/Pause";

    #[tokio::test]
    async fn no_token_is_unauthenticated() {
        let (code, _) = call(tokens(), LIST, None).await;
        assert_eq!(code, Some(tonic::Code::Unauthenticated));
        let (code, _) = call(tokens(), LIST, Some("Basic cmVhZC1zZWNyZXQ=")).await;
        assert_eq!(code, Some(tonic::Code::Unauthenticated));
        let (code, _) = call(tokens(), LIST, Some("Bearer ")).await;
        assert_eq!(code, Some(tonic::Code::Unauthenticated));
    }

    #[tokio::test]
    async fn wrong_token_is_unauthenticated() {
        let (code, _) = call(tokens(), LIST, Some("Bearer read-secreT")).await;
        assert_eq!(code, Some(tonic::Code::Unauthenticated));
        let (code, _) = call(tokens(), LIST, Some("Bearer read-secret-and-more")).await;
        assert_eq!(code, Some(tonic::Code::Unauthenticated));
    }

    #[tokio::test]
    async fn read_token_reads_but_cannot_administer() {
        let (code, caller) = call(tokens(), LIST, Some("Bearer read-secret")).await;
        assert_eq!((code, caller.as_str()), (None, "dash"));
        for method in ADMIN_METHODS {
            let path = format!("{CONTROL_PREFIX}{method}");
            let (code, _) = call(tokens(), &path, Some("Bearer read-secret")).await;
            assert_eq!(code, Some(tonic::Code::PermissionDenied), "{method}");
        }
    }

    #[tokio::test]
    async fn admin_token_may_do_everything() {
        let (code, caller) = call(tokens(), PAUSE, Some("bearer admin-secret")).await;
        assert_eq!((code, caller.as_str()), (None, "ops"));
        let (code, caller) = call(tokens(), LIST, Some("Bearer admin-secret")).await;
        assert_eq!((code, caller.as_str()), (None, "ops"));
    }

    #[tokio::test]
    async fn health_and_reflection_stay_open() {
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            let (code, caller) = call(tokens(), path, None).await;
            assert_eq!((code, caller.as_str()), (None, ""), "{path}");
        }
        // Anything else is closed, known or not.
        let (code, _) = call(tokens(), "/other.Service/Method", None).await;
        assert_eq!(code, Some(tonic::Code::Unauthenticated));
    }

    #[tokio::test]
    async fn no_tokens_configured_means_open() {
        let (code, caller) = call(Vec::new(), PAUSE, None).await;
        assert_eq!((code, caller.as_str()), (None, ""));
    }

    #[test]
    fn tokens_never_show_in_debug() {
        let shown = format!("{:?}", tokens());
        assert!(!shown.contains("secret\""), "{shown}");
        assert!(!shown.contains("admin-secret"), "{shown}");
    }
}
