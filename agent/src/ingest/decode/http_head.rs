//! The head of a plain HTTP request a tracked process sent: the host it
//! names (`Host`, or the authority of an absolute-form target, which
//! proxies get). The kernel copies the first 512 bytes of a TCP segment
//! that starts with a request method; the head may be cut there.

/// Why a copied segment gave no host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("not an HTTP/1.x request head")]
    NotARequest,
    #[error("the head was cut before its Host header")]
    Cut,
    #[error("the Host header is not a host name or address")]
    BadHost,
}

/// Headers read from a copied head; more are not looked at.
const MAX_HEADERS: usize = 32;

/// The longest host name (253) plus a port.
const MAX_HOST_LEN: usize = 253 + 6;

/// The host a request names, lower-cased, without its port; `Ok(None)` for
/// an HTTP/1.0 request without one.
pub fn host(segment: &[u8]) -> Result<Option<String>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let complete = match request.parse(segment) {
        Ok(status) => status.is_complete(),
        // More headers than looked at: the ones read are still good.
        Err(httparse::Error::TooManyHeaders) => false,
        Err(_) => return Err(HeadError::NotARequest),
    };
    if request.method.is_none() {
        return Err(HeadError::NotARequest);
    }
    let from_header = request
        .headers
        .iter()
        .take_while(|header| !header.name.is_empty())
        .find(|header| header.name.eq_ignore_ascii_case("host"))
        .map(|header| header.value);
    let from_target = request.path.and_then(absolute_form_authority);
    match from_header.or(from_target) {
        Some(value) => clean(value).map(Some),
        None if complete => Ok(None),
        None => Err(HeadError::Cut),
    }
}

/// `example.test:8080` of `http://example.test:8080/path`.
fn absolute_form_authority(target: &str) -> Option<&[u8]> {
    let rest = target.strip_prefix("http://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest.as_bytes()[..end])
}

/// The host of a `Host` value: no port, no trailing dot, lower case; only
/// the characters of names and addresses (an IPv6 literal keeps its
/// brackets' content).
fn clean(value: &[u8]) -> Result<String, HeadError> {
    let text = std::str::from_utf8(value)
        .map_err(|_| HeadError::BadHost)?
        .trim();
    if text.is_empty() || text.len() > MAX_HOST_LEN {
        return Err(HeadError::BadHost);
    }
    let host = if let Some(literal) = text.strip_prefix('[') {
        literal.split_once(']').ok_or(HeadError::BadHost)?.0
    } else {
        text.rsplit_once(':').map_or(text, |(host, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                host
            } else {
                text
            }
        })
    };
    let host = host.trim_end_matches('.');
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':');
    if host.is_empty() || !host.bytes().all(allowed) {
        return Err(HeadError::BadHost);
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_names_the_host_without_its_port() {
        let head = b"GET /v2/models HTTP/1.1\r\nUser-Agent: t\r\nHost: Registry.Example.Test:8080\r\nAccept: */*\r\n\r\n";
        assert_eq!(host(head), Ok(Some("registry.example.test".into())));
        assert_eq!(
            host(b"POST /x HTTP/1.1\r\nhost: 10.0.0.7\r\n\r\n"),
            Ok(Some("10.0.0.7".into()))
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: [fd00::7]:80\r\n\r\n"),
            Ok(Some("fd00::7".into()))
        );
    }

    #[test]
    fn a_proxy_request_names_its_host_in_the_target() {
        let head = b"GET http://files.example.test/a.bin HTTP/1.1\r\nAccept: */*\r\n\r\n";
        assert_eq!(host(head), Ok(Some("files.example.test".into())));
    }

    #[test]
    fn cut_heads_bad_hosts_and_other_bytes_are_errors() {
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nAccept: */*\r\nUser-Ag"),
            Err(HeadError::Cut)
        );
        assert_eq!(host(b"GET / HTTP/1.0\r\n\r\n"), Ok(None));
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            Err(HeadError::BadHost)
        );
        assert_eq!(
            host(b"GET / HTTP/1.1\r\nHost: ...\r\n\r\n"),
            Err(HeadError::BadHost)
        );
        assert_eq!(
            host(b"\x16\x03\x01\x02\x00\x01"),
            Err(HeadError::NotARequest)
        );
        assert_eq!(host(b""), Err(HeadError::NotARequest));
    }
}
