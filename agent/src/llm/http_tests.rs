use super::*;

/// Feeds calls, keeping every body in full; returns the messages and the
/// first error.
fn feed(stream: &mut HttpStream, calls: &[&[u8]]) -> (Vec<Message>, Option<StreamError>) {
    let mut out = Vec::new();
    let mut error = None;
    for (i, call) in calls.iter().enumerate() {
        if let Err(e) = stream.push(call, 0, i as u64, &mut |_| 1 << 20, &mut out) {
            error.get_or_insert(e);
        }
    }
    (out, error)
}

const REQUEST: &[u8] =
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Length: 11\r\n\r\n{\"a\":\"bc\"}\n";

#[test]
fn a_content_length_message_in_one_call() {
    let (out, error) = feed(&mut HttpStream::default(), &[REQUEST]);
    assert_eq!(error, None);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].body, b"{\"a\":\"bc\"}\n");
    assert_eq!(out[0].head.header("host"), Some("api.openai.com"));
    assert!(!out[0].truncated);
}

#[test]
fn every_split_of_a_message_gives_the_same_message() {
    for at in 1..REQUEST.len() {
        let (out, error) = feed(
            &mut HttpStream::default(),
            &[&REQUEST[..at], &REQUEST[at..]],
        );
        assert_eq!(error, None, "split at {at}");
        assert_eq!(out.len(), 1, "split at {at}");
        assert_eq!(out[0].body, b"{\"a\":\"bc\"}\n", "split at {at}");
    }
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n7\r\ndata: 1\r\n9\r\n\n\ndata: 2\r\n0\r\n\r\n";

#[test]
fn chunked_bodies_are_dechunked_at_any_split() {
    for at in 1..CHUNKED.len() {
        for at2 in at..CHUNKED.len() {
            let calls = [&CHUNKED[..at], &CHUNKED[at..at2], &CHUNKED[at2..]];
            let (out, error) = feed(&mut HttpStream::default(), &calls);
            assert_eq!(error, None, "split at {at},{at2}");
            assert_eq!(out.len(), 1, "split at {at},{at2}");
            assert_eq!(out[0].body, b"data: 1\n\ndata: 2", "split at {at},{at2}");
        }
    }
}

#[test]
fn keep_alive_messages_in_one_call_are_all_read() {
    let mut both = REQUEST.to_vec();
    both.extend_from_slice(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    both.extend_from_slice(REQUEST);
    let (out, error) = feed(&mut HttpStream::default(), &[&both]);
    assert_eq!(error, None);
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[1].head.start,
        StartLine::Request {
            method: "GET".into(),
            path: "/x".into()
        }
    );
}

#[test]
fn bodies_past_the_limit_are_counted_not_kept() {
    let mut stream = HttpStream::default();
    let mut out = Vec::new();
    stream
        .push(REQUEST, 0, 0, &mut |_| 4, &mut out)
        .expect("parses");
    assert_eq!(out[0].body, b"{\"a\"");
    assert!(out[0].truncated);
}

#[test]
fn a_gap_inside_a_content_length_body_is_skipped_by_count() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123";
    let mut stream = HttpStream::default();
    let mut out = Vec::new();
    // The call carried 8 bytes of body; the kernel copied 4.
    stream.push(head, 4, 0, &mut |_| 100, &mut out).unwrap();
    assert!(out.is_empty());
    stream.push(b"89", 0, 1, &mut |_| 100, &mut out).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].body, b"012389");
    assert!(out[0].truncated);
    // The stream is in step for the next message.
    let (more, _) = feed(&mut stream, &[b"HTTP/1.1 204 No Content\r\n\r\n"]);
    assert_eq!(more.len(), 1);
}

#[test]
fn a_gap_in_a_head_resyncs_at_the_next_message() {
    let mut stream = HttpStream::default();
    let mut out = Vec::new();
    stream
        .push(
            b"POST /v1/messages HTTP/1.1\r\nHo",
            500,
            0,
            &mut |_| 100,
            &mut out,
        )
        .unwrap();
    // Middle of the lost message: dropped.
    stream
        .push(b"st: x\r\n\r\n", 0, 1, &mut |_| 100, &mut out)
        .unwrap();
    assert!(out.is_empty());
    stream.push(REQUEST, 0, 2, &mut |_| 100, &mut out).unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn http2_and_garbage_are_told_apart_and_then_ignored() {
    let (out, error) = feed(
        &mut HttpStream::default(),
        &[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x00\x00\x12\x04\x00"],
    );
    assert_eq!(error, Some(StreamError::Http2));
    assert!(out.is_empty());
    let mut stream = HttpStream::default();
    let (out, error) = feed(
        &mut stream,
        &[
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"\x17\x03\x03",
        ],
    );
    assert_eq!(error, Some(StreamError::NotHttp));
    assert!(out.is_empty());
    assert!(stream.is_dead());
    assert_eq!(stream.held_bytes(), 0);
    // A new connection under the same identity starts with a message.
    let (out, error) = feed(&mut stream, &[REQUEST]);
    assert_eq!((out.len(), error), (1, None));
}

#[test]
fn a_response_without_length_runs_until_flushed() {
    let mut stream = HttpStream::default();
    let (out, _) = feed(
        &mut stream,
        &[
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n{\"a\":1}\n",
            b"{\"b\":2}\n",
        ],
    );
    assert!(out.is_empty());
    assert_eq!(stream.body_in_progress_since(), Some(1));
    let mut out = Vec::new();
    stream.flush(&mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].unterminated);
    assert_eq!(out[0].body, b"{\"a\":1}\n{\"b\":2}\n");
}

#[test]
fn a_bad_chunk_size_is_a_gap() {
    let (out, error) = feed(
        &mut HttpStream::default(),
        &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
    );
    assert!(out.is_empty());
    assert_eq!(error, Some(StreamError::Gap));
}

#[test]
fn a_message_taken_early_is_not_given_twice_and_the_stream_stays_in_step() {
    let mut stream = HttpStream::default();
    let (out, _) = feed(
        &mut stream,
        &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\ndata: [DONE]\r\n"],
    );
    assert!(out.is_empty());
    let (_, tail) = stream.body_tail(64).expect("a body in progress");
    assert_eq!(tail, b"data: [DONE]");
    let early = stream.take_early().expect("taken");
    assert_eq!(early.body, b"data: [DONE]");
    assert!(stream.take_early().is_none());
    let (out, error) = feed(
        &mut stream,
        &[b"0\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"],
    );
    assert_eq!(error, None);
    assert_eq!(out.len(), 1, "only the next message: {out:?}");
    assert_eq!(out[0].head.start, StartLine::Response { status: 204 });
}
