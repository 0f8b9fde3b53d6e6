//! `http-load`: the inference-server case's load generator. CONCURRENCY
//! threads, each with its own keep-alive connection to 127.0.0.1:PORT,
//! send `POST /v1/predict` with BODY_FILE's bytes, a new request as soon as
//! the last one is answered, REQUESTS in all; each request's latency (from
//! its first byte written to its answer's last byte read) is kept. Prints
//! `LATENCY wall_ns=<n> requests=<n> p50_ns=<n> p99_ns=<n>`.
//!
//! A native client, so that the load costs the shared cores as little as
//! possible beside the server being measured. The server is the bench's
//! own (`python/onnx_server.py`): answers carry `Content-Length`, never
//! chunks.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

pub fn run(port: u16, requests: u64, concurrency: u64, body: &[u8]) -> Result<(), String> {
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    let remaining = AtomicU64::new(requests);
    let started = Instant::now();
    let latencies = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency.max(1))
            .map(|_| scope.spawn(|| connection(port, &request, &remaining)))
            .collect();
        let mut all = Vec::with_capacity(requests as usize);
        for worker in workers {
            all.extend(worker.join().map_err(|_| "a load thread panicked")??);
        }
        Ok::<_, String>(all)
    })?;
    let wall_ns = started.elapsed().as_nanos();
    let mut latencies = latencies;
    latencies.sort_unstable();
    println!(
        "LATENCY wall_ns={wall_ns} requests={} p50_ns={} p99_ns={}",
        latencies.len(),
        percentile(&latencies, 50),
        percentile(&latencies, 99)
    );
    Ok(())
}

/// One connection's requests until none remain; their latencies in ns.
fn connection(port: u16, request: &[u8], remaining: &AtomicU64) -> Result<Vec<u64>, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut latencies = Vec::new();
    let mut line = String::new();
    let mut body = Vec::new();
    while remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        let sent = Instant::now();
        writer
            .write_all(request)
            .map_err(|e| format!("write: {e}"))?;
        let mut length = None;
        let mut status = None;
        loop {
            line.clear();
            if reader
                .read_line(&mut line)
                .map_err(|e| format!("read: {e}"))?
                == 0
            {
                return Err("the server closed the connection".into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if status.is_none() {
                status = header.split_whitespace().nth(1).map(str::to_owned);
            } else if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.ok_or("an answer without Content-Length")?;
        body.resize(length, 0);
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
        latencies.push(sent.elapsed().as_nanos() as u64);
        if status.as_deref() != Some("200") {
            return Err(format!(
                "the server answered {status:?}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    Ok(latencies)
}

/// The `p`th percentile of sorted `values` (nearest rank), 0 when empty.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), 50);
        assert_eq!(percentile(&values, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[1, 2, 3], 99), 3);
    }
}
