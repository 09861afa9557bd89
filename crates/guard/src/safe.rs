use hearth_api::ChatRequest;

/// A request the guard has inspected and, where the policy said so,
/// redacted. Only `hearth-guard` can construct one.
#[derive(Clone, Debug)]
pub struct CloudSafeRequest {
    request: ChatRequest,
}

impl CloudSafeRequest {
    pub(crate) fn new(request: ChatRequest) -> CloudSafeRequest {
        CloudSafeRequest { request }
    }

    /// The (possibly redacted) request to send upstream.
    pub fn request(&self) -> &ChatRequest {
        &self.request
    }

    /// Test-only escape hatch for crates that need a value of this type in
    /// their own tests (the cloud client's fault-injection tests).
    #[cfg(feature = "test-util")]
    pub fn assume_safe_for_tests(request: ChatRequest) -> CloudSafeRequest {
        CloudSafeRequest::new(request)
    }
}
