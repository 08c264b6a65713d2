use std::sync::Arc;

use dnslens_lens::model::{sample, Container, Pod, Served, TaskName};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

use super::*;
use crate::sink::test_dir::Dir;

/// A query and its response of `qname`, its wire bytes (`id` 0x1234, type A).
fn exchange(qname: &str) -> [(DnsEvent, Vec<u8>); 2] {
    let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in qname.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut r = q.clone();
    r[2] = 0x81;
    r[3] = 0x83;
    let mut query = sample::query(0x1234, qname, 1, 1_000);
    query.size = q.len() as u32;
    let mut response = sample::response(&query, 3, &[], 2_500);
    response.size = r.len() as u32;
    [(query, q), (response, r)]
}

/// Blocks of the file at `path` after its Section Header Block (the reader fails without
/// one), read by pcap-file.
fn blocks(path: &Path) -> Vec<Block<'static>> {
    let mut reader = PcapNgReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut blocks = Vec::new();
    while let Some(block) = reader.next_block() {
        blocks.push(block.unwrap().into_owned());
    }
    blocks
}

fn write(path: &Path, rotation: Option<Rotation>, events: &[(DnsEvent, Vec<u8>)]) {
    let mut sink = PcapngSink::start(PcapngFile::create(path, rotation).unwrap());
    for (event, wire) in events {
        sink.message(event, wire).unwrap();
        sink.flush().unwrap();
    }
    sink.finish().unwrap();
}

fn sum_is_valid(bytes: &[u8], pseudo: u32) -> bool {
    fold(sum16(pseudo, bytes)) == 0
}

#[test]
fn packets_read_back_with_interfaces_times_comments_and_checksums() {
    let dir = Dir::new("pcapng-read");
    let path = dir.0.join("dns.pcapng");
    let [(q, qw), (mut r, rw)] = exchange("www.example.com");
    // The response seen in another namespace, over IPv6.
    r.who.netns = 4_026_532_000;
    r.src = "[2001:db8::1]:53".parse().unwrap();
    r.dst = "[2001:db8::2]:40000".parse().unwrap();
    write(
        &path,
        None,
        &[(q.clone(), qw.clone()), (r.clone(), rw.clone())],
    );
    let blocks = blocks(&path);
    let idbs: Vec<_> = blocks
        .iter()
        .filter_map(|b| b.clone().into_interface_description())
        .collect();
    assert_eq!(idbs.len(), 2);
    for (idb, netns) in idbs.iter().zip([q.who.netns, r.who.netns]) {
        assert_eq!(idb.linktype, DataLink::RAW);
        assert!(idb
            .options
            .contains(&InterfaceDescriptionOption::IfTsResol(9)));
        let name = format!("netns:[{netns}]");
        assert!(idb
            .options
            .contains(&InterfaceDescriptionOption::IfName(name.into())));
    }
    let epbs: Vec<_> = blocks
        .iter()
        .filter_map(|b| b.clone().into_enhanced_packet())
        .collect();
    assert_eq!(epbs.len(), 2);
    // pcap-file reads the stamp as ns whatever if_tsresol says; 9 makes that right.
    assert_eq!(epbs[0].timestamp.as_nanos(), u128::from(q.time_ns));
    assert_eq!(epbs[1].timestamp.as_nanos(), u128::from(r.time_ns));
    assert_eq!((epbs[0].interface_id, epbs[1].interface_id), (0, 1));
    let v4 = &epbs[0].data;
    assert_eq!((v4[0], v4.len()), (0x45, 20 + 8 + qw.len()));
    assert_eq!(&v4[28..], &qw[..]);
    assert!(sum_is_valid(&v4[..20], 0), "IPv4 header checksum");
    let pseudo = sum16(sum16(0, &v4[12..20]), &[0, 17]) + (8 + qw.len()) as u32;
    assert!(sum_is_valid(&v4[20..], pseudo), "UDP checksum");
    let v6 = &epbs[1].data;
    assert_eq!((v6[0] >> 4, v6[6], v6.len()), (6, 17, 40 + 8 + rw.len()));
    let pseudo = sum16(sum16(0, &v6[8..40]), &[0, 17]) + (8 + rw.len()) as u32;
    assert!(sum_is_valid(&v6[40..], pseudo), "UDP over IPv6 checksum");
    assert_eq!(
        epbs[0].options,
        [EnhancedPacketOption::Comment(
            "pid 123 dig".to_string().into()
        )]
    );
}

#[test]
fn tcp_messages_keep_their_prefix_and_both_sides_agree_on_sequence_numbers() {
    let dir = Dir::new("pcapng-tcp");
    let path = dir.0.join("dns.pcapng");
    let [(mut q, qw), (mut r, rw)] = exchange("big.example");
    q.transport = Transport::Tcp;
    r.transport = Transport::Tcp;
    // The server's socket: the same query received, the same response sent.
    let mut served_q = q.clone();
    served_q.direction = Direction::Recv;
    served_q.who.socket = 999;
    let mut served_r = r.clone();
    served_r.direction = Direction::Send;
    served_r.who.socket = 999;
    let events = [
        (q, qw.clone()),
        (served_q, qw.clone()),
        (served_r, rw.clone()),
        (r, rw.clone()),
    ];
    write(&path, None, &events);
    let epbs: Vec<_> = blocks(&path)
        .into_iter()
        .filter_map(Block::into_enhanced_packet)
        .collect();
    let seq_ack = |data: &[u8]| {
        let tcp = &data[20..];
        (
            u32::from_be_bytes(tcp[4..8].try_into().unwrap()),
            u32::from_be_bytes(tcp[8..12].try_into().unwrap()),
        )
    };
    let qlen = qw.len() as u32 + 2;
    let seen: Vec<_> = epbs.iter().map(|e| seq_ack(&e.data)).collect();
    assert_eq!(seen, [(1, 1), (1, 1), (1, 1 + qlen), (1, 1 + qlen)]);
    for (e, wire) in epbs.iter().zip([&qw, &qw, &rw, &rw]) {
        let payload = &e.data[40..];
        assert_eq!(&payload[..2], &(wire.len() as u16).to_be_bytes());
        assert_eq!(&payload[2..], &wire[..]);
        let pseudo = sum16(sum16(0, &e.data[12..20]), &[0, 6]) + (20 + wire.len() + 2) as u32;
        assert!(sum_is_valid(&e.data[20..], pseudo), "TCP checksum");
    }
}

#[test]
fn a_cut_message_keeps_its_original_length() {
    let dir = Dir::new("pcapng-cut");
    let path = dir.0.join("dns.pcapng");
    let [_, (mut r, rw)] = exchange("cut.example");
    r.size = 3000;
    r.truncated = true;
    write(&path, None, &[(r, rw.clone())]);
    let epb = blocks(&path)
        .into_iter()
        .find_map(Block::into_enhanced_packet)
        .unwrap();
    assert_eq!(epb.data.len(), 28 + rw.len());
    assert_eq!(epb.original_len, 28 + 3000);
    assert_eq!(u16::from_be_bytes([epb.data[2], epb.data[3]]), 28 + 3000);
}

#[test]
fn comments_name_process_container_and_pod_escaped_and_bounded() {
    let [(mut q, _), _] = exchange("x.example");
    q.who.process.exe = Some(Arc::from("/usr/bin/dig"));
    q.who.container = Some(Container {
        id: Arc::from("0d2d06bae0964ff0d2d06bae0964ff0d2d06bae0964ff0d2d06bae0964ff0aa"),
        runtime: dnslens_lens::container::Runtime::Containerd,
        name: Some("app\nx".to_string()),
    });
    q.who.pod = Some(Pod {
        uid: Arc::from("u-1"),
        info: Some(sample::pod_info(None)),
    });
    assert_eq!(
        comment(&q),
        "pid 123 dig exe /usr/bin/dig; container 0d2d06bae096 app\\x0ax; pod \
         shop/web-7d4b9f-xk2p1; pod uid u-1"
    );
    // A forwarder's upstream query names whom it asks for.
    let mut upstream = q.clone();
    upstream.served = vec![
        Served {
            pid: 7,
            name: TaskName::new("getent"),
            pod: q.who.pod.clone(),
        },
        Served {
            pid: 8,
            name: TaskName::new("cu\x1brl"),
            pod: None,
        },
    ];
    assert!(
        comment(&upstream).ends_with(
            "pod uid u-1; for pid 7 getent (pod shop/web-7d4b9f-xk2p1), pid 8 cu\\x1brl"
        ),
        "{}",
        comment(&upstream)
    );
    q.who.process.exe = Some(Arc::from(format!("/{}", "é".repeat(2000)).as_str()));
    let long = comment(&q);
    assert!(
        long.len() <= COMMENT_MAX && long.ends_with('…'),
        "{}",
        long.len()
    );
}

#[test]
fn rotated_files_each_start_a_section_with_their_interfaces() {
    let dir = Dir::new("pcapng-rotate");
    let path = dir.0.join("dns.pcapng");
    let events: Vec<_> = (0..12)
        .flat_map(|n| exchange(&format!("n{n}.example")))
        .collect();
    write(&path, Some(Rotation { size: 600, keep: 2 }), &events);
    let mut packets = 0;
    for name in ["dns.pcapng", "dns.pcapng.1", "dns.pcapng.2"] {
        let file = dir.0.join(name);
        assert!(std::fs::metadata(&file).unwrap().len() <= 600, "{name}");
        let blocks = blocks(&file);
        assert!(
            matches!(blocks[0], Block::InterfaceDescription(_)),
            "{name}"
        );
        packets += blocks.len() - 1;
    }
    assert!(!dir.0.join("dns.pcapng.3").exists());
    assert!(packets > 0 && packets < events.len());
}

/// One query from each of `n` network namespaces.
fn from_namespaces(n: u32) -> Vec<(DnsEvent, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let [(mut q, wire), _] = exchange("ns.example");
            q.who.netns = 4_026_532_000 + i;
            (q, wire)
        })
        .collect()
}

fn interfaces_and_packets(blocks: &[Block<'_>]) -> (usize, usize) {
    let count = |f: fn(&Block<'_>) -> bool| blocks.iter().filter(|b| f(b)).count();
    (
        count(|b| matches!(b, Block::InterfaceDescription(_))),
        count(|b| matches!(b, Block::EnhancedPacket(_))),
    )
}

#[test]
fn namespaces_past_the_bound_start_a_new_file_or_section() {
    let events = from_namespaces(INTERFACES_MAX as u32 + 1);
    let dir = Dir::new("pcapng-namespaces");
    let rotated = dir.0.join("rotated.pcapng");
    let rotation = Rotation {
        size: 1 << 30,
        keep: 3,
    };
    write(&rotated, Some(rotation), &events);
    let older = blocks(&dir.0.join("rotated.pcapng.1"));
    assert_eq!(
        interfaces_and_packets(&older),
        (INTERFACES_MAX, INTERFACES_MAX)
    );
    assert_eq!(interfaces_and_packets(&blocks(&rotated)), (1, 1));
    assert!(!dir.0.join("rotated.pcapng.2").exists());

    let single = dir.0.join("single.pcapng");
    write(&single, None, &events);
    let all = blocks(&single);
    let second = all
        .iter()
        .position(|b| matches!(b, Block::SectionHeader(_)))
        .expect("a second section");
    assert_eq!(
        interfaces_and_packets(&all[..second]),
        (INTERFACES_MAX, INTERFACES_MAX)
    );
    assert_eq!(interfaces_and_packets(&all[second..]), (1, 1));
}
