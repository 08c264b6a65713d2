//! Message decoding: well-formed traffic, every formatted record type, and each way a hostile
//! message can be broken.

use dnslens_testkit::dns as support;

use dnslens_wire::{decode, peek_header, DecodeError, Edns, Flags, Rcode, RecordType, Section};
use support::{Builder, Part, ADDITIONAL, ANSWER, QUESTION};

#[test]
fn typical_query() {
    let msg = decode(&support::typical_query()).unwrap();
    assert_eq!(msg.id, 0xbeef);
    assert!(!msg.is_response());
    assert!(msg.flags.rd);
    let q = msg.question().unwrap();
    assert_eq!(
        (q.name.as_str(), q.qtype, q.qclass),
        ("www.example.com", RecordType::A, 1)
    );
    assert!(msg.answers.is_empty() && msg.authority.is_empty() && msg.additional.is_empty());
    assert_eq!(
        msg.edns,
        Some(Edns {
            udp_size: 1232,
            version: 0,
            dnssec_ok: false,
            options: vec![(10, 8)],
        })
    );
    assert_eq!(msg.rcode, Rcode::NOERROR);
}

#[test]
fn typical_response_with_compression() {
    let bytes = support::typical_response();
    let msg = decode(&bytes).unwrap();
    assert!(msg.is_response());
    assert_eq!(msg.question().unwrap().name, "www.example.com");
    let answers: Vec<_> = msg
        .answers
        .iter()
        .map(|r| (r.name.as_str(), r.rtype.to_string(), r.ttl, r.data.as_str()))
        .collect();
    let cdn = "www.example.com.cdn.example.net";
    assert_eq!(
        answers,
        [
            ("www.example.com", "CNAME".to_string(), 300, cdn),
            (cdn, "A".to_string(), 60, "93.184.216.34"),
            (cdn, "A".to_string(), 60, "93.184.216.35"),
        ]
    );
    // Compression made it smaller than the same message written out in full.
    let mut plain = Builder::new(0xbeef, 0x8180).uncompressed();
    plain
        .question("www.example.com", 1)
        .answer("www.example.com", 5, 300, &[Part::Name(cdn)])
        .answer(cdn, 1, 60, &[Part::Bytes(&[93, 184, 216, 34])])
        .answer(cdn, 1, 60, &[Part::Bytes(&[93, 184, 216, 35])])
        .opt(1232, 0, &[]);
    let plain = plain.build();
    assert!(bytes.len() + 60 < plain.len());
    assert_eq!(decode(&plain).unwrap(), msg);
}

#[test]
fn case_is_kept_and_pointers_show_the_first_spelling() {
    let mut b = Builder::new(7, 0x8180);
    b.question("WwW.ExAmple.COM", 1).answer(
        "www.example.com",
        1,
        5,
        &[Part::Bytes(&[192, 0, 2, 1])],
    );
    let msg = decode(&b.build()).unwrap();
    assert_eq!(msg.questions[0].name, "WwW.ExAmple.COM");
    assert_eq!(msg.answers[0].name, "WwW.ExAmple.COM");
}

#[test]
fn root_and_escaped_names() {
    let msg = decode(&Builder::query(1, ".", 2).build()).unwrap();
    assert_eq!(msg.questions[0].name, ".");
    assert_eq!(msg.questions[0].qtype, RecordType::NS);

    let mut b = Builder::new(1, 0x8180);
    b.answer("x", 5, 0, &[Part::Bytes(b"\x03a.b\x04 x\xff\"\x00")]);
    assert_eq!(
        decode(&b.build()).unwrap().answers[0].data,
        r#"a\.b.\032x\255\""#
    );
}

#[test]
fn header_flags() {
    let mut header = [0u8; 12];
    header[2] = 0x80 | 2 << 3 | 0x04 | 0x02 | 0x01;
    header[3] = 0x80 | 0x40 | 0x20 | 0x10 | 0x03;
    let want = Flags {
        qr: true,
        opcode: 2,
        aa: true,
        tc: true,
        rd: true,
        ra: true,
        ad: true,
        cd: true,
    };
    let msg = decode(&header).unwrap();
    assert_eq!((msg.flags, msg.rcode), (want, Rcode::NXDOMAIN));
    assert_eq!(peek_header(&header), Some((0, want, 0)));
    assert_eq!(peek_header(&header[..11]), None);

    header[2] = 0;
    header[3] = 0x20;
    let flags = decode(&header).unwrap().flags;
    assert!(flags.ad && !flags.cd && !flags.qr && flags.opcode == 0);
}

#[test]
fn edns_extended_rcode_version_and_do() {
    let mut b = Builder::new(9, 0x8180);
    b.question("example.com", 1)
        .opt(4096, 1 << 24 | 0x8000, &[(10, &[0; 16]), (12, &[])]);
    let msg = decode(&b.build()).unwrap();
    assert_eq!(msg.rcode, Rcode::BADVERS);
    assert_eq!(msg.rcode.to_string(), "BADVERS");
    let edns = msg.edns.unwrap();
    assert_eq!(
        (edns.udp_size, edns.version, edns.dnssec_ok),
        (4096, 0, true)
    );
    assert_eq!(edns.options, [(10, 16), (12, 0)]);

    // Extended bits combine with the header's 4: 0x0ff << 4 | 3.
    let mut b = Builder::new(9, 0x8183);
    b.opt(512, 0xff01_0000, &[]);
    let msg = decode(&b.build()).unwrap();
    assert_eq!((msg.rcode, msg.edns.unwrap().version), (Rcode(0xff3), 1));
}

#[test]
fn opt_is_lifted_out_of_additional() {
    let mut b = Builder::new(9, 0x8180);
    b.record(
        ADDITIONAL,
        "ns1.example.com",
        1,
        1,
        60,
        &[Part::Bytes(&[192, 0, 2, 53])],
    )
    .opt(1232, 0, &[])
    .record(
        ADDITIONAL,
        "ns1.example.com",
        28,
        1,
        60,
        &[Part::Bytes(&[0; 16])],
    );
    let msg = decode(&b.build()).unwrap();
    let data: Vec<_> = msg.additional.iter().map(|r| r.data.as_str()).collect();
    assert_eq!(data, ["192.0.2.53", "::"]);
    assert!(msg.edns.is_some());
}

#[test]
fn broken_opt() {
    let mut b = Builder::new(9, 0x8180);
    b.record(
        ADDITIONAL,
        ".",
        41,
        1232,
        0,
        &[Part::Bytes(&[0, 10, 0, 8, 1, 2])],
    );
    let bytes = b.build();
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::BadRdata {
            rtype: RecordType::OPT,
            offset: 12 + 11
        })
    );
    assert_eq!(decode(&bytes).unwrap_err().kind(), "bad_rdata");

    let mut b = Builder::new(9, 0x8180);
    b.opt(1232, 0, &[]).opt(1232, 0, &[]);
    assert_eq!(
        decode(&b.build()),
        Err(DecodeError::DuplicateOpt { offset: 23 })
    );
}

/// The data of a lone answer of `rtype`.
fn data(rtype: u16, parts: &[Part<'_>]) -> String {
    let mut b = Builder::new(1, 0x8180);
    b.question("example.com", rtype)
        .answer("example.com", rtype, 60, parts);
    let msg = decode(&b.build()).unwrap();
    assert_eq!(msg.answers[0].rtype, RecordType(rtype));
    msg.answers[0].data.clone()
}

#[test]
fn address_and_name_records() {
    assert_eq!(data(1, &[Part::Bytes(&[10, 0, 0, 255])]), "10.0.0.255");
    let v6 = "2001:db8::1"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    assert_eq!(data(28, &[Part::Bytes(&v6)]), "2001:db8::1");
    for rtype in [2, 5, 12, 39] {
        assert_eq!(
            data(rtype, &[Part::Name("target.example.com")]),
            "target.example.com"
        );
    }
    // The target compresses against the owner name.
    assert_eq!(data(5, &[Part::Name("example.com")]), "example.com");
}

#[test]
fn mx_soa_srv_naptr() {
    assert_eq!(
        data(15, &[Part::U16(10), Part::Name("mail.example.com")]),
        "10 mail.example.com"
    );
    let soa = [
        Part::Name("ns1.example.com"),
        Part::Name("hostmaster.example.com"),
        Part::U32(2024010101),
        Part::U32(7200),
        Part::U32(3600),
        Part::U32(1209600),
        Part::U32(300),
    ];
    assert_eq!(
        data(6, &soa),
        "ns1.example.com hostmaster.example.com 2024010101 7200 3600 1209600 300"
    );
    let srv = [
        Part::U16(10),
        Part::U16(60),
        Part::U16(5060),
        Part::Name("sip.example.com"),
    ];
    assert_eq!(data(33, &srv), "10 60 5060 sip.example.com");
    let naptr = [
        Part::U16(100),
        Part::U16(10),
        Part::Str(b"S"),
        Part::Str(b"SIP+D2U"),
        Part::Str(b""),
        Part::Name("_sip._udp.example.com"),
    ];
    assert_eq!(
        data(35, &naptr),
        r#"100 10 "S" "SIP+D2U" "" _sip._udp.example.com"#
    );
}

#[test]
fn txt_hinfo_caa() {
    let txt = [
        Part::Str(b"v=spf1 -all"),
        Part::Str(b"say \"hi\"\\\x00\x7f"),
    ];
    assert_eq!(data(16, &txt), r#""v=spf1 -all" "say \"hi\"\\\000\127""#);
    assert_eq!(data(16, &[Part::Str(b"")]), r#""""#);
    assert_eq!(
        data(13, &[Part::Str(b"PC"), Part::Str(b"Linux")]),
        r#""PC" "Linux""#
    );
    let caa = [
        Part::U8(128),
        Part::Str(b"issue"),
        Part::Bytes(b"letsencrypt.org"),
    ];
    assert_eq!(data(257, &caa), r#"128 issue "letsencrypt.org""#);
}

#[test]
fn https_and_svcb() {
    let v6 = "2606:4700::6810:84e5"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let https = [
        Part::U16(1),
        Part::Name("."),
        Part::U16(0),
        Part::U16(4),
        Part::Bytes(&[0, 1, 0, 4]),
        Part::U16(1),
        Part::U16(6),
        Part::Bytes(b"\x02h3\x02h2"),
        Part::U16(2),
        Part::U16(0),
        Part::U16(3),
        Part::U16(2),
        Part::U16(443),
        Part::U16(4),
        Part::U16(8),
        Part::Bytes(&[104, 16, 132, 229, 104, 16, 133, 229]),
        Part::U16(5),
        Part::U16(3),
        Part::Bytes(&[1, 2, 3]),
        Part::U16(6),
        Part::U16(16),
        Part::Bytes(&v6),
        Part::U16(65000),
        Part::U16(2),
        Part::Bytes(&[0xab, 0xcd]),
        Part::U16(65001),
        Part::U16(0),
    ];
    assert_eq!(
        data(65, &https),
        "1 . mandatory=alpn,ipv4hint alpn=\"h3,h2\" no-default-alpn port=443 \
         ipv4hint=104.16.132.229,104.16.133.229 ech=AQID ipv6hint=2606:4700::6810:84e5 \
         key65000=ABCD key65001"
    );
    assert_eq!(
        data(64, &[Part::U16(0), Part::Name("svc.example.net")]),
        "0 svc.example.net"
    );
    // A port of the wrong size makes the whole record generic.
    let bad = [
        Part::U16(1),
        Part::Name("."),
        Part::U16(3),
        Part::U16(1),
        Part::U8(80),
    ];
    assert_eq!(data(65, &bad), r"\# 8 0001000003000150");
}

#[test]
fn dnssec_records() {
    let digest = [0x2b, 0xb1, 0x83, 0xaf];
    let ds = [
        Part::U16(60485),
        Part::U8(5),
        Part::U8(1),
        Part::Bytes(&digest),
    ];
    assert_eq!(data(43, &ds), "60485 5 1 2BB183AF");
    let key = [
        Part::U16(257),
        Part::U8(3),
        Part::U8(8),
        Part::Bytes(b"foo"),
    ];
    assert_eq!(data(48, &key), "257 3 8 Zm9v");
    let rrsig = [
        Part::U16(1),
        Part::U8(8),
        Part::U8(2),
        Part::U32(3600),
        Part::U32(1_700_000_000),
        Part::U32(1_699_000_000),
        Part::U16(12345),
        Part::Name("example.com"),
        Part::Bytes(b"foob"),
    ];
    assert_eq!(
        data(46, &rrsig),
        "A 8 2 3600 20231114221320 20231103082640 12345 example.com Zm9vYg=="
    );
}

#[test]
fn generic_data() {
    assert_eq!(data(65280, &[Part::Bytes(&[1, 2, 0xab])]), r"\# 3 0102AB");
    assert_eq!(data(65280, &[]), r"\# 0");
    // NSEC is not formatted: generic.
    assert_eq!(data(47, &[Part::Bytes(&[0, 0, 1, 0x40])]), r"\# 4 00000140");
}

#[test]
fn malformed_typed_data_is_generic_and_keeps_the_question() {
    assert_eq!(data(1, &[Part::Bytes(&[1, 2, 3])]), r"\# 3 010203");
    assert_eq!(data(28, &[Part::Bytes(&[0; 4])]), r"\# 4 00000000");
    assert_eq!(
        data(15, &[Part::U16(10), Part::Name("mx.example"), Part::U8(0)]),
        r"\# 15 000A026D78076578616D706C650000"
    );
    assert_eq!(data(16, &[]), r"\# 0");
    assert_eq!(data(16, &[Part::Bytes(&[5, b'a'])]), r"\# 2 0561");
    assert_eq!(
        data(257, &[Part::U8(0), Part::Str(b"is-sue")]),
        r"\# 8 000669732D737565"
    );
    // A CNAME whose name points back into itself (offset 41 is the rdata).
    let msg = {
        let mut b = Builder::new(1, 0x8180);
        b.question("example.com", 5).answer(
            "example.com",
            5,
            60,
            &[Part::Bytes(&[1, b'a', 0xc0, 41])],
        );
        decode(&b.build()).unwrap()
    };
    assert_eq!(msg.answers[0].data, r"\# 4 0161C029");
    assert_eq!(msg.question().unwrap().name, "example.com");
    // A CNAME whose name runs past its data.
    assert_eq!(data(5, &[Part::Bytes(b"\x03abc")]), r"\# 4 03616263");
}

#[test]
fn short_and_truncated() {
    assert_eq!(decode(&[]), Err(DecodeError::ShortHeader { len: 0 }));
    let bytes = support::typical_response();
    for end in 0..bytes.len() {
        let err = decode(&bytes[..end]).unwrap_err();
        if end < 12 {
            assert_eq!(err, DecodeError::ShortHeader { len: end });
        } else {
            assert!(
                matches!(
                    err,
                    DecodeError::Truncated { .. } | DecodeError::TooManyRecords { .. }
                ),
                "{end}: {err:?}"
            );
        }
    }
    let end = bytes.len() - 3;
    assert_eq!(
        decode(&bytes[..end]),
        Err(DecodeError::Truncated {
            section: Section::Additional,
            offset: end
        })
    );
    // Bytes after the last record are ignored.
    let mut padded = bytes.clone();
    padded.extend_from_slice(&[0xff; 7]);
    assert_eq!(decode(&padded), decode(&bytes));
}

#[test]
fn counts_larger_than_the_bytes() {
    let mut b = Builder::query(1, "example.com", 1);
    b.set_count(ANSWER, 1000);
    assert_eq!(
        decode(&b.build()),
        Err(DecodeError::TooManyRecords {
            section: Section::Answer,
            count: 1000
        })
    );
    let mut header = [0u8; 12];
    header[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
    let err = decode(&header).unwrap_err();
    assert_eq!(
        err,
        DecodeError::TooManyRecords {
            section: Section::Question,
            count: u16::MAX
        }
    );
    assert_eq!(err.kind(), "too_many_records");

    // One more than present but within what the bytes could hold: runs out while reading.
    let mut b = Builder::new(1, 0x8180);
    b.question("example.com", 1);
    for i in 0..4 {
        b.answer("example.com", 1, 60, &[Part::Bytes(&[192, 0, 2, i])]);
    }
    b.set_count(ANSWER, 5);
    assert!(matches!(
        decode(&b.build()),
        Err(DecodeError::Truncated {
            section: Section::Answer,
            ..
        })
    ));
    b.set_count(QUESTION, 2);
    assert!(decode(&b.build()).is_err());
}

/// A header with one question whose name is `name`, then QTYPE and QCLASS.
fn question_with(name: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(&[0, 1, 0, 1]);
    bytes
}

#[test]
fn compression_loops_and_bad_pointers() {
    let self_pointer = question_with(&[0xc0, 12]);
    assert_eq!(
        decode(&self_pointer),
        Err(DecodeError::PointerLoop {
            offset: 12,
            target: 12
        })
    );
    let back_into_name = question_with(&[1, b'a', 0xc0, 12]);
    assert_eq!(
        decode(&back_into_name),
        Err(DecodeError::PointerLoop {
            offset: 14,
            target: 12
        })
    );
    let forward = question_with(&[0xc0, 14, 0]);
    assert_eq!(
        decode(&forward),
        Err(DecodeError::PointerForward {
            offset: 12,
            target: 14
        })
    );
    let out_of_range = question_with(&[0xff, 0xff]);
    assert_eq!(
        decode(&out_of_range).unwrap_err().kind(),
        "pointer_out_of_range"
    );

    // Two pointers at each other: the question's at 14 targets the answer's at 20, which
    // targets 14. Whichever is read first, one of them points forward.
    let mut bytes = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    bytes.extend_from_slice(&[1, b'a', 0xc0, 20, 0, 1, 0, 1]);
    bytes.extend_from_slice(&[0xc0, 14, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::PointerForward {
            offset: 14,
            target: 20
        })
    );
}

#[test]
fn label_and_name_limits() {
    assert_eq!(
        decode(&question_with(&[64])),
        Err(DecodeError::LabelTooLong {
            offset: 12,
            len: 64
        })
    );
    for byte in [0x80, 0xbf] {
        let err = decode(&question_with(&[byte, 0, 0, 0])).unwrap_err();
        assert_eq!(err, DecodeError::BadLabelType { offset: 12, byte });
        assert_eq!(err.kind(), "bad_label_type");
    }
    // 0x41 was the bit-string label of RFC 2673.
    assert_eq!(
        decode(&question_with(&[0x41, 0, 0])).unwrap_err().kind(),
        "label_too_long"
    );

    // A 193-octet question name, then an answer owned by one more 63-octet label and a
    // pointer to it: 257 octets through compression.
    let long = format!("{0}.{0}.{0}", "x".repeat(63));
    let mut b = Builder::new(1, 0x8180);
    b.question(&long, 1).answer(
        &format!("{}.{long}", "y".repeat(63)),
        1,
        0,
        &[Part::Bytes(&[0; 4])],
    );
    let bytes = b.build();
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::NameTooLong {
            offset: 12 + 193 + 4
        })
    );
    assert!(decode(&Builder::query(1, &long, 1).build()).is_ok());
}

#[test]
fn error_messages_say_what_and_where() {
    let err = decode(&question_with(&[0xc0, 12])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "compression pointer at offset 12 points back into its own name at 12"
    );
    let err = decode(&Builder::query(1, "www.example.com", 1).build()[..20]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "message ends inside the question section: bytes needed at offset 20"
    );
}

#[test]
fn agrees_with_hickory() {
    use hickory_proto::op::Message as HMessage;
    for bytes in [
        support::typical_query(),
        support::typical_response(),
        support::large_response(),
    ] {
        let ours = decode(&bytes).unwrap();
        let theirs = HMessage::from_vec(&bytes).unwrap();
        assert_eq!(ours.id, theirs.id());
        assert_eq!(ours.questions.len(), theirs.queries().len());
        for (q, h) in ours.questions.iter().zip(theirs.queries()) {
            assert_eq!(format!("{}.", q.name), h.name().to_string());
            assert_eq!(q.qtype.0, u16::from(h.query_type()));
        }
        assert_eq!(ours.answers.len(), theirs.answers().len());
        for (r, h) in ours.answers.iter().zip(theirs.answers()) {
            assert_eq!(format!("{}.", r.name), h.name().to_string());
            assert_eq!((r.rtype.0, r.ttl), (u16::from(h.record_type()), h.ttl()));
            assert_eq!(
                r.data.trim_end_matches('.'),
                h.data().to_string().trim_end_matches('.')
            );
        }
        assert_eq!(ours.edns.is_some(), theirs.extensions().is_some());
    }
}

#[test]
fn decodes_what_hickory_encodes() {
    use hickory_proto::op::{Message as HMessage, MessageType, Query};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, TXT};
    use hickory_proto::rr::{Name, RData, Record, RecordType as HType};

    let name = |s: &str| Name::from_ascii(s).unwrap();
    let mut m = HMessage::new();
    m.set_id(42).set_message_type(MessageType::Response);
    m.add_query(Query::query(name("api.example.com."), HType::A));
    let answers = [
        RData::CNAME(CNAME(name("edge.example.net."))),
        RData::A(A::new(198, 51, 100, 7)),
        RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
        RData::MX(MX::new(5, name("mx.example.net."))),
        RData::TXT(TXT::new(vec!["hello world".into(), "x=\"y\"".into()])),
    ];
    for rdata in answers {
        m.add_answer(Record::from_rdata(name("api.example.com."), 30, rdata));
    }
    let msg = decode(&m.to_vec().unwrap()).unwrap();
    assert_eq!(msg.id, 42);
    let data: Vec<_> = msg.answers.iter().map(|r| r.data.as_str()).collect();
    assert_eq!(
        data,
        [
            "edge.example.net",
            "198.51.100.7",
            "2001:db8::7",
            "5 mx.example.net",
            r#""hello world" "x=\"y\"""#,
        ]
    );
    assert!(msg
        .answers
        .iter()
        .all(|r| r.name == "api.example.com" && r.ttl == 30));
}
