//! Every error a client can see, and the one place where errors become HTTP
//! responses: OpenAI's shape `{"error": {"message", "type", "param", "code"}}`.

use bytes::Bytes;
use hearth_engine::scheduler::SubmitError;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::json;

/// An error answered to the client.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, ...
    pub kind: &'static str,
    /// The offending request parameter (`messages[1].content`, `top_p`, ...).
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds, for 503 answers.
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: Some(code),
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    /// 400: a parameter has the wrong JSON type.
    pub fn invalid_type(param: &str, expected: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_type",
            format!("'{param}' must be {expected}"),
        )
        .with_param(param)
    }

    /// 400: a parameter is out of range or malformed.
    pub fn invalid_value(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_value",
            message,
        )
        .with_param(param)
    }

    /// 400: a required parameter is absent.
    pub fn missing(param: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "missing_required_parameter",
            format!("missing required parameter '{param}'"),
        )
        .with_param(param)
    }

    /// 400: a valid parameter this server does not implement.
    pub fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_parameter",
            message,
        )
        .with_param(param)
    }

    /// 400: the body is not JSON (or not an object).
    pub fn bad_json(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            message,
        )
    }

    /// 400: prompt + max_tokens do not fit the context.
    pub fn context_overflow(
        prompt: usize,
        requested: usize,
        n_ctx: usize,
        param: &str,
    ) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "context_length_exceeded",
            format!(
                "this model's context holds {n_ctx} tokens, but the prompt has {prompt} tokens and {requested} completion tokens were requested; shorten the prompt or lower '{param}'"
            ),
        )
        .with_param(param)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "missing or incorrect API key; send 'Authorization: Bearer <key>'",
        )
    }

    pub fn host_not_allowed(host: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "host_not_allowed",
            format!("Host '{host}' is not allowed (DNS-rebinding protection); start the server with --allow-host {host} to accept it"),
        )
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!("unknown URL: {path}"),
        )
    }

    pub fn model_not_found(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("the model '{id}' does not exist"),
        )
        .with_param("model")
    }

    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("the request body exceeds {limit} bytes"),
        )
    }

    pub fn body_timeout() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "request_timeout",
            "the request body was not received in time",
        )
    }

    pub fn loading() -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "model_loading",
            "the model is loading",
        );
        e.retry_after = Some(1);
        e
    }

    pub fn overloaded(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "server_overloaded",
            message,
        );
        e.retry_after = Some(1);
        e
    }

    /// 501: a route whose backend is not configured (embeddings without an embedder).
    pub fn not_configured(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "invalid_request_error",
            "not_configured",
            message,
        )
    }

    /// 400: the privacy policy refuses the request (names entity types only).
    pub fn blocked(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "blocked_by_privacy_policy",
            message,
        )
        .with_param("messages")
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message,
        )
    }

    /// The JSON body.
    pub fn to_json(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }

    pub fn into_response(self) -> Response<crate::http::Body> {
        let body = serde_json::to_vec(&self.to_json()).unwrap_or_default();
        let mut r = Response::new(crate::http::Body::full(Full::new(Bytes::from(body))));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        if let Some(s) = self.retry_after {
            h.insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(s),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// Scheduler refusals as client errors. `max_param` names the length
/// parameter the client used.
pub fn from_submit(e: SubmitError, max_param: &str) -> ApiError {
    match e {
        SubmitError::QueueFull { .. } => ApiError::overloaded(e.to_string()),
        SubmitError::TooManyChoices { .. } => ApiError::invalid_value("n", e.to_string()),
        SubmitError::ContextOverflow {
            prompt,
            requested,
            n_ctx,
        } => ApiError::context_overflow(prompt, requested, n_ctx, max_param),
        SubmitError::EmptyPrompt => ApiError::invalid_value("prompt", "the prompt is empty"),
        SubmitError::TokenOutOfRange { .. } => ApiError::invalid_value("prompt", e.to_string()),
        // Sampler messages start with the parameter's name ("top_p = 2 is out of range").
        SubmitError::Invalid(m) => {
            let param = m.split_whitespace().next().unwrap_or("").to_string();
            ApiError::invalid_value(&param, m)
        }
        SubmitError::Stopped => ApiError::overloaded("the server is shutting down"),
    }
}
