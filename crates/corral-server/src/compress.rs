//! HTTP compression, as Triton's HTTP endpoint and tritonclient do it: request bodies with
//! `Content-Encoding: gzip` or `deflate` (zlib, as Python's `zlib.compress` writes it), and
//! inference answers compressed when `Accept-Encoding` names either. Only inference answers:
//! Triton compresses nothing else (metadata, statistics, repository, errors), and clients
//! such as `tritonclient.http.aio` (whose aiohttp always sends `Accept-Encoding`) inflate
//! only inference answers.
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

use crate::{
    error::{CallError, ErrorKind},
    triton,
};

/// The encodings corral reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Deflate,
}

impl Encoding {
    /// A request's `Content-Encoding`, matched exactly as Triton does.
    fn parse(token: &str) -> Option<Encoding> {
        match token {
            "gzip" => Some(Encoding::Gzip),
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

/// The encoding to answer an inference in, by Triton's rule (`http_server.cc`,
/// `CompressionTypeUsed`): each `Accept-Encoding` item, leading spaces stripped, may carry a
/// weight after a literal `;q=` (default 1); of `identity`, `gzip` and `deflate` (exact
/// case), the first with the strictly highest weight above 0 wins, and identity means none.
pub fn accepted(headers: &HeaderMap) -> Option<Encoding> {
    let accept = headers.get(header::ACCEPT_ENCODING)?.to_str().ok()?;
    let mut best: (Option<Encoding>, f64) = (None, 0.0);
    for item in accept.split(',') {
        let item = item.trim_start_matches(' ');
        let (name, weight) = match item.split_once(";q=") {
            Some((name, weight)) => match weight.trim_end().parse::<f64>() {
                Ok(weight) => (name, weight),
                Err(_) => continue,
            },
            None => (item.trim_end(), 1.0),
        };
        let encoding = match name {
            "identity" => None,
            "gzip" => Some(Encoding::Gzip),
            "deflate" => Some(Encoding::Deflate),
            _ => continue,
        };
        if weight > best.1 {
            best = (encoding, weight);
        }
    }
    best.0
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
    // Triton: 501 with `Accept-Encoding: gzip, deflate` (added by the REST layer).
    let encoding = Encoding::parse(&text).ok_or_else(triton::unsupported_compression)?;
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
        return Err(triton::decompressed_too_large(limit));
    }
    Ok(out)
}

/// `response`, compressed in `encoding` when one was asked for and it is not already encoded.
pub async fn answer(response: Response, encoding: Option<Encoding>) -> Response {
    let Some(encoding) = encoding else { return response };
    if response.headers().contains_key(header::CONTENT_ENCODING) {
        return response;
    }
    use http_body::Body as _;
    let (mut parts, mut body) = response.into_parts();
    // Answers are built in memory, as frames (a JSON header, then tensors in their own
    // buffers): each is compressed where it is, never first joined into one buffer. A
    // failure to read one leaves nothing to send.
    let mut frames = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(frame) = frame else { return Response::from_parts(parts, Body::empty()) };
        if let Ok(data) = frame.into_data() {
            frames.push(data);
        }
    }
    let compressed = tokio::task::spawn_blocking(move || deflate(encoding, &frames)).await;
    let Ok(compressed) = compressed else { return Response::from_parts(parts, Body::empty()) };
    parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding.name()));
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(compressed.len()));
    Response::from_parts(parts, Body::from(compressed))
}

fn deflate(encoding: Encoding, frames: &[bytes::Bytes]) -> Vec<u8> {
    use std::io::Write;
    let level = flate2::Compression::fast();
    let written = match encoding {
        Encoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), level);
            frames.iter().try_for_each(|f| encoder.write_all(f)).and_then(|()| encoder.finish())
        }
        Encoding::Deflate => {
            let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), level);
            frames.iter().try_for_each(|f| encoder.write_all(f)).and_then(|()| encoder.finish())
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
        // An answer's frames are compressed one after another, as one stream.
        let (first, second) = zeros.split_at(1000);
        let frames = [bytes::Bytes::copy_from_slice(first), bytes::Bytes::copy_from_slice(second)];
        for encoding in [Encoding::Gzip, Encoding::Deflate] {
            let packed = deflate(encoding, &frames);
            assert!(packed.len() < 10_000);
            assert_eq!(inflate(encoding, &packed, 1 << 20).expect("fits"), zeros);
            let error = inflate(encoding, &packed, 1000).expect_err("past the limit");
            assert_eq!(error.kind, ErrorKind::TooLarge, "{error}");
            assert_eq!(inflate(encoding, b"not compressed", 1000).expect_err("garbage").kind, ErrorKind::BadRequest);
        }
        let pick = |accept: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept));
            accepted(&headers)
        };
        // Triton's rule: the highest weight, the first on a tie; `; q=` (with a space) and
        // unknown or capitalised names are ignored; identity means none.
        assert_eq!(pick("br;q=1, gzip;q=0, deflate"), Some(Encoding::Deflate));
        assert_eq!(pick("gzip, deflate"), Some(Encoding::Gzip));
        assert_eq!(pick("gzip;q=0.5, deflate;q=0.8"), Some(Encoding::Deflate));
        assert_eq!(pick("identity, gzip"), None);
        assert_eq!(pick("gzip; q=0.5, GZIP, deflate;q=0.1"), Some(Encoding::Deflate));
        assert_eq!(pick("gzip;q=0"), None);
    }
}
