use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Seconds a sender is asked to wait before retrying after a 503.
const RETRY_AFTER_SECS: &str = "5";

/// Why a webhook was refused. The one place that maps a refusal to an HTTP status and a
/// `{"error": "..."}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// 401: missing or wrong credentials.
    Unauthorized(&'static str),
    /// 400: the request is malformed; resending it will not help.
    BadRequest(String),
    /// 413: body larger than `max_body_bytes`.
    PayloadTooLarge,
    /// 415: a content type this endpoint does not read.
    UnsupportedMediaType(String),
    /// 503 with `Retry-After`: the bus is down, a publish failed, or we are shutting down.
    Unavailable(String),
    /// 503: this endpoint has no credentials configured, so it accepts nothing.
    NotConfigured(&'static str),
    /// 404: no webhook source of this name.
    NotFound(String),
}

impl Rejection {
    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::BadRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::Unavailable(_) | Rejection::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    /// The `reason` label of `rebake_webhooks_rejected_total`.
    pub(crate) fn metric_reason(&self) -> &'static str {
        match self {
            Rejection::Unauthorized(_) => "unauthorized",
            Rejection::BadRequest(_) => "malformed",
            Rejection::PayloadTooLarge => "too_large",
            Rejection::UnsupportedMediaType(_) => "media_type",
            Rejection::Unavailable(_) => "unavailable",
            Rejection::NotConfigured(_) => "not_configured",
            Rejection::NotFound(_) => "not_found",
        }
    }

    /// The reason sent back to the caller.
    pub(crate) fn reason(&self) -> String {
        match self {
            Rejection::Unauthorized(reason) | Rejection::NotConfigured(reason) => (*reason).to_string(),
            Rejection::BadRequest(reason)
            | Rejection::UnsupportedMediaType(reason)
            | Rejection::Unavailable(reason)
            | Rejection::NotFound(reason) => reason.clone(),
            Rejection::PayloadTooLarge => "request body is too large".to_string(),
        }
    }
}

/// The `reason` label of a rejection, carried on its response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RejectedReason(pub(crate) &'static str);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(serde_json::json!({ "error": self.reason() }))).into_response();
        // Read by the router's counting middleware (`rebake_webhooks_rejected_total{reason}`).
        response.extensions_mut().insert(RejectedReason(self.metric_reason()));
        if matches!(self, Rejection::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_asks_for_a_retry() {
        let unavailable = Rejection::Unavailable("event bus unavailable".into()).into_response();
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.headers()[header::RETRY_AFTER], "5");

        let not_configured = Rejection::NotConfigured("not configured").into_response();
        assert_eq!(not_configured.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(not_configured.headers().get(header::RETRY_AFTER).is_none());
    }
}
