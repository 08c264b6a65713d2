//! Clients that try to stop an HTTP server, as one on the network could: a `Content-Length`
//! near 2^64, 200 clients that never finish their request head, and a 4 MiB header line. The
//! agent's endpoints must keep answering through them (its unit tests and the hostile suite).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Connections the attack keeps open; dropping it closes them.
pub struct Attack {
    _held: Vec<TcpStream>,
}

/// Runs every attack on `at`. Returns once the huge request was answered or closed and the
/// others are under way, holding their connections open.
pub fn attack(at: SocketAddr) -> std::io::Result<Attack> {
    let mut huge = TcpStream::connect(at)?;
    write!(
        huge,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    let _ = huge.read_to_end(&mut reply);
    let mut held = Vec::with_capacity(201);
    for _ in 0..200 {
        let mut slow = TcpStream::connect(at)?;
        write!(slow, "GET /metrics HTTP/1.1\r\nHost: x\r\n")?;
        held.push(slow);
    }
    let mut long = TcpStream::connect(at)?;
    let line = format!("GET /metrics HTTP/1.1\r\nX-Long: {}", "a".repeat(4 << 20));
    // The server closes the connection long before 4 MiB: the write may fail.
    let _ = long.write_all(line.as_bytes());
    held.push(long);
    Ok(Attack { _held: held })
}
