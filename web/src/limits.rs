//! Body size limits per endpoint (DESIGN.md §8).

use actix_web::web::JsonConfig;

/// Registration, login, worker connect and profile.
pub const REGISTER: usize = 16 * 1024;
/// A task: 128 KB of input. The body may carry a little more than the input itself.
pub const TASK: usize = 128 * 1024 + 1024;
/// A submitted output.
pub const OUTPUT: usize = 256 * 1024 + 1024;
/// Small bodies (credits).
pub const SMALL: usize = 8 * 1024;

pub fn json(limit: usize) -> JsonConfig {
    JsonConfig::default()
        .limit(limit)
        .content_type_required(false)
        .error_handler(crate::error::json_error)
}

/// A JSON body that may be left out: an empty body reads as `T::default()`, while a body that is
/// there must parse as `T` (with the endpoint's size limit and the error envelope), so a mistyped
/// field is refused instead of silently replaced by the defaults.
pub struct JsonOrDefault<T>(pub T);

impl<T> actix_web::FromRequest for JsonOrDefault<T>
where
    T: serde::de::DeserializeOwned + Default + 'static,
{
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(
        req: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        use actix_web::http::header;
        let headers = req.headers();
        let empty = headers.get(header::TRANSFER_ENCODING).is_none()
            && headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        if empty {
            return Box::pin(std::future::ready(Ok(JsonOrDefault(T::default()))));
        }
        let body = actix_web::web::Json::<T>::from_request(req, payload);
        Box::pin(async move { body.await.map(|b| JsonOrDefault(b.into_inner())) })
    }
}
