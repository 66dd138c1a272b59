//! Request bodies, read exactly as the API document declares them.
//!
//! `serde_json` alone is laxer than JSON Schema in one way and stricter in another: it reads a
//! struct from a JSON array (`"constraints": [null, null]`), which the document calls a type
//! error, and it refuses `5.0` for an integer field, which JSON Schema calls an integer. Bodies
//! are therefore parsed to a `Value` and read through [`Strict`], which takes a struct only from
//! an object and an integral float as the integer it is. The size limit of each endpoint is
//! [`BodyLimit`] (its `app_data`), enforced while the body streams in.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::StreamExt;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::{Number, Value};

use crate::error::ApiError;

/// The largest body an endpoint reads, in bytes.
#[derive(Clone, Copy)]
pub struct BodyLimit {
    pub max_bytes: usize,
}

/// Registration and login.
pub const REGISTER_BYTES: BodyLimit = BodyLimit {
    max_bytes: 16 * 1024,
};
/// Worker connect and profile: three lists of 64 names of 64 characters fit even when every
/// character is sent as a `\u` escape pair.
pub const PROFILE_BYTES: BodyLimit = BodyLimit {
    max_bytes: 192 * 1024,
};
/// A task: its input, and a little room for the rest of the body.
pub const TASK_BYTES: BodyLimit = BodyLimit {
    max_bytes: clawjobs_actors::limits::MAX_INPUT_BYTES + 1024,
};
/// A submitted output (or a benchmark's expected output).
pub const OUTPUT_BYTES: BodyLimit = BodyLimit {
    max_bytes: clawjobs_actors::limits::MAX_OUTPUT_BYTES + 1024,
};
/// Small bodies (credits): a 2,000-character reason fits even when every character is escaped.
pub const SMALL_BYTES: BodyLimit = BodyLimit {
    max_bytes: 32 * 1024,
};

/// A bounty: a 200-character title and two 20,000-character texts fit even when every
/// character is sent as a `\u` escape.
pub const BOUNTY_BYTES: BodyLimit = BodyLimit {
    max_bytes: 256 * 1024,
};

/// A provider's webhook: Stripe's events are a few KB; 256 KB leaves room for any.
pub const WEBHOOK_BYTES: BodyLimit = BodyLimit {
    max_bytes: 256 * 1024,
};

/// A JSON body of type `T`.
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A JSON body that may be left out: an empty body (or `null`) reads as `T::default()`, while a
/// body that is there must be a `T`.
pub struct JsonOrDefault<T>(pub T);

type BodyFuture<B> = Pin<Box<dyn Future<Output = Result<B, ApiError>>>>;

/// Reads the body and parses it as `T`, or answers `absent()` when there is none (`null`
/// counts as none when `null_is_absent`).
fn extract<T: DeserializeOwned + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    null_is_absent: bool,
    absent: fn() -> Result<T, ApiError>,
) -> BodyFuture<T> {
    let read = read(req, payload);
    Box::pin(async move {
        match read.await? {
            None => absent(),
            Some(Value::Null) if null_is_absent => absent(),
            Some(v) => parse(&v),
        }
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = extract(req, payload, false, || {
            Err(ApiError::validation("a JSON request body is required"))
        });
        Box::pin(async move { body.await.map(Json) })
    }
}

impl<T: DeserializeOwned + Default + 'static> FromRequest for JsonOrDefault<T> {
    type Error = ApiError;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = extract(req, payload, true, || Ok(T::default()));
        Box::pin(async move { body.await.map(JsonOrDefault) })
    }
}

/// Reads the body (None when it is empty) within the endpoint's limit.
fn read(
    req: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<Option<Value>, ApiError>> + 'static {
    let bytes = read_bytes(req, payload);
    async move {
        let body = bytes.await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ApiError::validation(format!("the request body is not valid JSON: {e}")))
    }
}

/// Reads the raw body within the endpoint's limit (its [`BodyLimit`]).
fn read_bytes(
    req: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<web::Bytes, ApiError>> + 'static {
    let max_bytes = req
        .app_data::<BodyLimit>()
        .copied()
        .unwrap_or(SMALL_BYTES)
        .max_bytes;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    async move {
        let too_large = || {
            ApiError::too_large(format!(
                "the request body is larger than this endpoint's limit of {} KB",
                max_bytes / 1024
            ))
        };
        if declared.is_some_and(|n| n > max_bytes) {
            return Err(too_large());
        }
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::validation(format!("the request body could not be read: {e}"))
            })?;
            if body.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// The body exactly as it was sent (a webhook's signature covers these bytes).
pub struct Raw(pub web::Bytes);

impl FromRequest for Raw {
    type Error = ApiError;
    type Future = BodyFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = read_bytes(req, payload);
        Box::pin(async move { bytes.await.map(Raw) })
    }
}

fn parse<T: DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    T::deserialize(Strict(v))
        .map_err(|e| ApiError::validation(format!("the request body does not fit: {e}")))
}

/// A `Value` read the way JSON Schema reads it (see the module's doc).
pub struct Strict<'a>(pub &'a Value);

type Error = serde_json::Error;

impl<'de> Deserializer<'de> for Strict<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => visit_number(n, visitor),
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(Items(items.iter())),
            Value::Object(map) => visitor.visit_map(Fields {
                iter: map.iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(de::Error::invalid_type(unexpected(other), &"an object")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // serde_json's own `Map` would read `null` as an empty map.
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(de::Error::invalid_type(unexpected(other), &"an object")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct identifier ignored_any
    }
}

/// An integral float (`5.0`) is the integer it stands for, as in JSON Schema.
fn visit_number<'de, V: Visitor<'de>>(n: &Number, visitor: V) -> Result<V::Value, Error> {
    if let Some(u) = n.as_u64() {
        return visitor.visit_u64(u);
    }
    if let Some(i) = n.as_i64() {
        return visitor.visit_i64(i);
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    // Within ±2^53 every integral float is exactly its integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if f.fract() == 0.0 && f.abs() <= EXACT {
        if f >= 0.0 {
            return visitor.visit_u64(f as u64);
        }
        return visitor.visit_i64(f as i64);
    }
    visitor.visit_f64(f)
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(n) => n
            .as_f64()
            .map_or(de::Unexpected::Other("number"), de::Unexpected::Float),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct Items<'a>(std::slice::Iter<'a, Value>);

impl<'de> de::SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Strict(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Fields<'a> {
    iter: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'de> de::MapAccess<'de> for Fields<'de> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                let key = de::value::BorrowedStrDeserializer::<Error>::new(k.as_str());
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(v) => seed.deserialize(Strict(v)),
            None => Err(de::Error::custom("a value without a key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        n: Option<u32>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Option<Inner>,
        price: i64,
        #[serde(default)]
        rest: Value,
    }

    fn read(v: Value) -> Result<Outer, Error> {
        Outer::deserialize(Strict(&v))
    }

    #[test]
    fn structs_come_only_from_objects() {
        assert!(read(serde_json::json!({"inner": [null], "price": 1})).is_err());
        assert!(read(serde_json::json!([null, 1])).is_err());
        let ok = read(serde_json::json!({"inner": {"n": 3}, "price": 1, "rest": [1, {"a": []}]}));
        assert_eq!(ok.unwrap().inner, Some(Inner { n: Some(3) }));
    }

    #[test]
    fn integral_floats_are_integers_and_others_are_not() {
        assert_eq!(read(serde_json::json!({"price": 5.0})).unwrap().price, 5);
        assert_eq!(read(serde_json::json!({"price": -2.0})).unwrap().price, -2);
        assert!(read(serde_json::json!({"price": 5.5})).is_err());
        assert!(read(serde_json::json!({"price": 1e300})).is_err());
        assert!(read(serde_json::json!({"inner": {"n": 4294967296.0}, "price": 1})).is_err());
    }

    #[test]
    fn a_map_is_not_read_from_null() {
        let v = serde_json::json!(null);
        assert!(serde_json::Map::<String, Value>::deserialize(Strict(&v)).is_err());
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        assert!(read(serde_json::json!({"price": 1, "extra": 1})).is_err());
        assert!(read(serde_json::json!({"price": "1"})).is_err());
        assert!(read(serde_json::json!({"inner": {"m": 1}, "price": 1})).is_err());
    }
}
