//! The server name (SNI) a TLS ClientHello asks for, read from the start
//! of the hello that the kernel copied off the wire.
//!
//! Why a reader of its own: the kernel copies at most 512 bytes, and
//! ClientHellos are often longer (OpenSSL pads them to 512 bytes of
//! handshake, post-quantum key shares add more than a kilobyte). The
//! parsers of well-kept crates (rustls' `Acceptor`, `tls-parser`) want the
//! whole message and give nothing for a cut one, while the server name
//! sits near the start. This reader walks the fixed fields and the
//! extensions up to `server_name` only, checks every length against the
//! bytes there are, and never reads past them.

/// The TLS record type of handshake messages, and the ClientHello type.
const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
/// A DNS name is at most 253 characters.
const MAX_NAME_LEN: usize = 253;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("the bytes are not a TLS ClientHello")]
    NotAHello,
    #[error("the copy of the ClientHello ends before its server name")]
    Cut,
    #[error("the ClientHello's server name is malformed")]
    BadName,
}

/// A bounds-checked reader over the copied bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        let end = self.at.checked_add(n).ok_or(HelloError::Cut)?;
        let slice = self.bytes.get(self.at..end).ok_or(HelloError::Cut)?;
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Skips a field preceded by its length in `width` bytes.
    fn skip_vector(&mut self, width: usize) -> Result<(), HelloError> {
        let len = match width {
            1 => usize::from(self.u8()?),
            _ => usize::from(self.u16()?),
        };
        self.take(len).map(|_| ())
    }
}

/// The host name of the `server_name` extension; `Ok(None)` when the hello
/// has none (a connection by address).
pub fn server_name(record: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader {
        bytes: record,
        at: 0,
    };
    // Record header: type, version, length; handshake header: type, length.
    if r.u8()? != HANDSHAKE {
        return Err(HelloError::NotAHello);
    }
    r.take(4)?;
    if r.u8()? != CLIENT_HELLO {
        return Err(HelloError::NotAHello);
    }
    let length = r.take(3)?;
    let hello_end = r.at
        + (usize::from(length[0]) << 16 | usize::from(length[1]) << 8 | usize::from(length[2]));
    // Version, random, session id, cipher suites, compression methods.
    r.take(2 + 32)?;
    r.skip_vector(1)?;
    r.skip_vector(2)?;
    r.skip_vector(1)?;
    if r.at >= hello_end {
        // A hello without extensions ends here.
        return Ok(None);
    }
    let extensions_len = usize::from(r.u16()?);
    let extensions_end = r.at + extensions_len;
    while r.at < extensions_end {
        let kind = r.u16()?;
        let len = usize::from(r.u16()?);
        if kind != EXTENSION_SERVER_NAME {
            r.take(len)?;
            continue;
        }
        let mut list = Reader {
            bytes: r.take(len)?,
            at: 0,
        };
        let list_len = usize::from(list.u16()?);
        let list_end = list.at + list_len;
        while list.at < list_end {
            let name_type = list.u8()?;
            let name_len = usize::from(list.u16()?);
            let name = list.take(name_len)?;
            if name_type != NAME_TYPE_HOST {
                continue;
            }
            if name.is_empty()
                || name.len() > MAX_NAME_LEN
                || !name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err(HelloError::BadName);
            }
            // A fully qualified name's trailing dot is not part of the host;
            // a name of dots alone names none.
            let host = String::from_utf8_lossy(name)
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if host.is_empty() {
                return Err(HelloError::BadName);
            }
            return Ok(Some(host));
        }
        return Ok(None);
    }
    Ok(None)
}

/// A ClientHello as clients write it, with `name` in its SNI extension and
/// `padding` bytes of padding extension after it.
#[cfg(test)]
pub(crate) fn test_hello(name: Option<&str>, padding: usize) -> Vec<u8> {
    let mut extensions = Vec::new();
    // An extension before the server name: supported groups.
    extensions.extend_from_slice(&[0, 10, 0, 4, 0, 2, 0, 29]);
    if let Some(name) = name {
        let n = name.len() as u16;
        extensions.extend_from_slice(&0u16.to_be_bytes());
        extensions.extend_from_slice(&(n + 5).to_be_bytes());
        extensions.extend_from_slice(&(n + 3).to_be_bytes());
        extensions.push(0);
        extensions.extend_from_slice(&n.to_be_bytes());
        extensions.extend_from_slice(name.as_bytes());
    }
    extensions.extend_from_slice(&21u16.to_be_bytes());
    extensions.extend_from_slice(&(padding as u16).to_be_bytes());
    extensions.extend(std::iter::repeat_n(0, padding));
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![CLIENT_HELLO, 0];
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![HANDSHAKE, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_server_name_of_a_whole_or_cut_hello() {
        let hello = test_hello(Some("API.Example.Test"), 600);
        assert_eq!(
            server_name(&hello),
            Ok(Some("api.example.test".to_string()))
        );
        // Cut at the kernel's 512 bytes, after the name: still read.
        assert_eq!(
            server_name(&hello[..512]),
            Ok(Some("api.example.test".to_string()))
        );
        assert_eq!(server_name(&test_hello(None, 10)), Ok(None));
    }

    #[test]
    fn every_cut_before_the_name_is_an_error_and_other_bytes_are_no_hello() {
        let hello = test_hello(Some("api.example.test"), 0);
        let name_end = hello.len() - 4;
        for cut in 0..name_end {
            assert!(server_name(&hello[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(
            server_name(b"GET / HTTP/1.1\r\n"),
            Err(HelloError::NotAHello)
        );
        let mut bad = hello.clone();
        let at = bad.len() - 4 - "api.example.test".len();
        bad[at] = b'/';
        assert_eq!(server_name(&bad), Err(HelloError::BadName));
    }

    #[test]
    fn a_trailing_dot_is_dropped_and_a_name_of_dots_is_bad() {
        assert_eq!(
            server_name(&test_hello(Some("api.example.test."), 0)),
            Ok(Some("api.example.test".to_string()))
        );
        for dots in [".", "..", &".".repeat(100)] {
            assert_eq!(
                server_name(&test_hello(Some(dots), 0)),
                Err(HelloError::BadName),
                "{dots:?}"
            );
        }
    }

    /// A deterministic xorshift, so the fuzzing below is reproducible.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_and_mutated_hellos_never_panic() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let seed = test_hello(Some("models.example.test"), 40);
        let mut named = 0;
        for round in 0..20_000 {
            let mut msg = if round % 2 == 0 {
                seed.clone()
            } else {
                let len = (xorshift(&mut state) % 520) as usize;
                (0..len).map(|_| xorshift(&mut state) as u8).collect()
            };
            for _ in 0..(xorshift(&mut state) % 3) {
                if msg.is_empty() {
                    break;
                }
                let at = (xorshift(&mut state) as usize) % msg.len();
                msg[at] = xorshift(&mut state) as u8;
            }
            if let Ok(Some(name)) = server_name(&msg) {
                assert!(name.len() <= MAX_NAME_LEN);
                named += 1;
            }
        }
        assert!(named > 1000, "only {named} named");
    }
}
