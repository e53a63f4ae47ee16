//! HTTP compression, as Triton's HTTP endpoint and tritonclient do it: request bodies with
//! `Content-Encoding: gzip` or `deflate` (zlib, as Python's `zlib.compress` writes it), and
//! answers compressed when `Accept-Encoding` names either.
//!
//! Inflating stops one byte past the body limit, so a small body that would inflate past it
//! (a zip bomb) costs at most the limit, and answers 413 like an oversized plain body. Both
//! directions run on a blocking thread: a 64 MiB body takes tens of milliseconds.

use std::io::Read;

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, header},
    response::Response,
};

use crate::error::{CallError, ErrorKind};

/// The encodings corral reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Deflate,
}

impl Encoding {
    fn parse(token: &str) -> Option<Encoding> {
        match token.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Encoding::Gzip),
            "deflate" => Some(Encoding::Deflate),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// The encoding to answer in: the first of gzip or deflate that `Accept-Encoding` names
/// with a non-zero weight.
pub fn accepted(headers: &HeaderMap) -> Option<Encoding> {
    let accept = headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?;
    accept.split(',').find_map(|item| {
        let mut parts = item.split(';');
        let encoding = Encoding::parse(parts.next()?)?;
        let refused =
            parts.any(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f64>().ok()) == Some(0.0));
        (!refused).then_some(encoding)
    })
}

/// Inflates `body` as its `Content-Encoding` says, at most `limit` bytes, and fixes the
/// headers to describe what the handler gets.
pub async fn inflate_request(
    headers: &mut HeaderMap,
    body: bytes::Bytes,
    limit: usize,
) -> Result<bytes::Bytes, CallError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else { return Ok(body) };
    let text = value.to_str().unwrap_or_default().trim().to_owned();
    if text.is_empty() || text.eq_ignore_ascii_case("identity") {
        headers.remove(header::CONTENT_ENCODING);
        return Ok(body);
    }
    let encoding = Encoding::parse(&text).ok_or_else(|| {
        CallError::bad_request(format!("unsupported Content-Encoding `{text}`; send gzip, deflate or identity"))
    })?;
    let inflated = tokio::task::spawn_blocking(move || inflate(encoding, &body, limit))
        .await
        .map_err(|_| CallError::new(ErrorKind::Internal, "inflating the request body failed"))??;
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(inflated.len()));
    Ok(inflated.into())
}

fn inflate(encoding: Encoding, body: &[u8], limit: usize) -> Result<Vec<u8>, CallError> {
    let mut out = Vec::new();
    let read = match encoding {
        Encoding::Gzip => flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out),
        Encoding::Deflate => flate2::read::ZlibDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out),
    };
    read.map_err(|error| {
        CallError::bad_request(format!("the request body is not valid {} data: {error}", encoding.name()))
    })?;
    if out.len() > limit {
        return Err(CallError::new(
            ErrorKind::TooLarge,
            format!(
                "the request body inflates past the limit of {limit} bytes ({} compressed); raise --max-body-bytes",
                encoding.name()
            ),
        ));
    }
    Ok(out)
}

/// `response`, compressed in `encoding` when one was asked for and it is not already encoded.
pub async fn answer(response: Response, encoding: Option<Encoding>) -> Response {
    let Some(encoding) = encoding else { return response };
    if response.headers().contains_key(header::CONTENT_ENCODING) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Answers are built in memory; a failure to collect one leaves nothing to send.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let compressed = tokio::task::spawn_blocking(move || deflate(encoding, &bytes)).await;
    let Ok(compressed) = compressed else { return Response::from_parts(parts, Body::empty()) };
    parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding.name()));
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(compressed.len()));
    parts.headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    Response::from_parts(parts, Body::from(compressed))
}

fn deflate(encoding: Encoding, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let level = flate2::Compression::fast();
    let written = match encoding {
        Encoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            encoder.write_all(bytes).and_then(|()| encoder.finish())
        }
        Encoding::Deflate => {
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), level);
            encoder.write_all(bytes).and_then(|()| encoder.finish())
        }
    };
    written.expect("writing into memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bomb_stops_at_the_limit_and_round_trips_hold() {
        let zeros = vec![0u8; 1 << 20];
        for encoding in [Encoding::Gzip, Encoding::Deflate] {
            let packed = deflate(encoding, &zeros);
            assert!(packed.len() < 10_000);
            assert_eq!(inflate(encoding, &packed, 1 << 20).expect("fits"), zeros);
            let error = inflate(encoding, &packed, 1000).expect_err("past the limit");
            assert_eq!(error.kind, ErrorKind::TooLarge, "{error}");
            assert_eq!(inflate(encoding, b"not compressed", 1000).expect_err("garbage").kind, ErrorKind::BadRequest);
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br;q=1, gzip;q=0, deflate"));
        assert_eq!(accepted(&headers), Some(Encoding::Deflate));
    }
}
