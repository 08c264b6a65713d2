//! Test helpers: a temporary directory removed on drop, and ring-buffer records as the kernel
//! writes them. For this crate's unit tests and, through the `testutil` feature, its benches.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "dnslens-lens-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Wire bytes of a message with one question and A answers (compressed to the question name).
pub fn dns_message(
    id: u16,
    response: bool,
    rcode: u8,
    qname: &str,
    qtype: u16,
    answers: &[[u8; 4]],
) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.push(if response { 0x81 } else { 0x01 });
    m.push(if response { 0x80 | rcode } else { 0 });
    for count in [1, answers.len() as u16, 0, 0] {
        m.extend_from_slice(&count.to_be_bytes());
    }
    for label in qname.split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    for addr in answers {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4]);
        m.extend_from_slice(addr);
    }
    m
}

/// Header of an IPv4 UDP event of pid 123 on socket 777: `send` from 10.0.0.2:40000 to
/// 10.0.0.1:53, or `recv` of the reverse.
pub fn header(send: bool, mono_ns: u64, payload_len: usize) -> dnslens_abi::EventHeader {
    let mut h = dnslens_abi::EventHeader {
        kind: 1,
        timestamp_ns: mono_ns,
        process_start_ns: 99,
        tgid: 123,
        tid: 124,
        ppid: 1,
        uid: 1000,
        netns_ino: 4_026_531_840,
        socket_ino: 777,
        msg_len: payload_len as u32,
        payload_len: payload_len as u32,
        family: 2,
        local_port: 40_000,
        remote_port: 53,
        protocol: 17,
        direction: if send { 1 } else { 2 },
        syscall: if send { 1 } else { 6 },
        ..Default::default()
    };
    h.local_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
    h.remote_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
    h.comm[..4].copy_from_slice(b"dig\0");
    h.leader_comm[..4].copy_from_slice(b"dig\0");
    h
}

/// Header of a connect record of pid 123 from 10.0.0.2 (no port yet) to 10.0.0.1:443.
pub fn connect_header(mono_ns: u64) -> dnslens_abi::EventHeader {
    let mut h = header(true, mono_ns, 0);
    h.kind = dnslens_abi::RECORD_CONNECT;
    h.protocol = 6;
    h.syscall = 11;
    h.local_port = 0;
    h.remote_port = 443;
    h
}

/// The bytes of a repr(C) plain-old-data value, as the kernel side writes it.
pub fn pod_bytes<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: callers pass the probe's repr(C) headers, made of integers and byte arrays with
    // explicit padding fields, so every byte is initialized.
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
    .to_vec()
}

/// A ring-buffer record: the header bytes then the payload.
pub fn record(header: &dnslens_abi::EventHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = pod_bytes(header);
    out.extend_from_slice(payload);
    out
}

/// An exec record.
pub fn exec_record(tgid: u32, start_ns: u64, path: &str) -> Vec<u8> {
    let mut filename = [0u8; dnslens_abi::PATH_LEN];
    filename[..path.len()].copy_from_slice(path.as_bytes());
    pod_bytes(&dnslens_abi::ExecHeader {
        kind: 2,
        tgid,
        process_start_ns: start_ns,
        filename,
    })
}

/// A libc record of pid 123: `name` passed to getaddrinfo at `entry_ns`, returning `status` at
/// `return_ns`.
pub fn libc_record(name: &str, status: i32, entry_ns: u64, return_ns: u64) -> Vec<u8> {
    let mut h = header(true, return_ns, 0);
    (h.kind, h.socket_ino, h.protocol, h.direction, h.syscall) =
        (dnslens_abi::RECORD_LIBC, 0, 0, 0, 0);
    let mut tail = dnslens_abi::LibcCallTail {
        entry_ns,
        status,
        function: dnslens_abi::LibcFunction::Getaddrinfo as u8,
        _pad: [0; 3],
        name: [0; dnslens_abi::LIBC_NAME_LEN],
    };
    tail.name[..name.len()].copy_from_slice(name.as_bytes());
    record(&h, &pod_bytes(&tail))
}
