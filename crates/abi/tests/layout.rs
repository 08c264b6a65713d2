//! The Rust view must match bpf/dnslens.h byte for byte: compile the header with the host C
//! compiler (no clang needed) and compare every offset and size, and every enum value the
//! records and the counters map carry.

use std::{mem::offset_of, path::Path, process::Command};

use dnslens_abi::{
    Direction, EventHeader, ExecHeader, KernelCounter, LibcCallTail, LibcFunction, Named, Source,
    SourceKey, Syscall, MAX_PAYLOAD, MAX_PORTS, RESOLVER_RENEWAL_NS,
};

macro_rules! fields {
    ($($field:ident),* $(,)?) => {
        vec![$((stringify!($field), offset_of!(EventHeader, $field))),*]
    };
}

#[test]
fn event_header_matches_the_c_header() {
    let rust_fields = fields!(
        kind,
        timestamp_ns,
        process_start_ns,
        cgroup_id,
        cgroup_v1_id,
        socket_ino,
        tgid,
        tid,
        ppid,
        uid,
        netns_ino,
        msg_len,
        payload_len,
        family,
        local_port,
        remote_port,
        protocol,
        direction,
        syscall,
        msg_index,
        _pad,
        local_addr,
        remote_addr,
        comm,
        leader_comm,
        cgroup_name,
        cgroup_parent_name
    );
    let mut program = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"dnslens.h\"\nint main(void) {\n",
    );
    for (name, _) in &rust_fields {
        program += &format!("printf(\"{name} %zu\\n\", offsetof(struct dnslens_event, {name}));\n");
    }
    program += "printf(\"payload %zu\\n\", offsetof(struct dnslens_event, payload));\n";
    for field in ["kind", "tgid", "process_start_ns", "filename"] {
        program += &format!(
            "printf(\"exec.{field} %zu\\n\", offsetof(struct dnslens_exec_event, {field}));\n"
        );
    }
    program += "printf(\"exec.size %zu\\n\", sizeof(struct dnslens_exec_event));\n";
    for field in ["entry_ns", "status", "function", "_pad", "name"] {
        program += &format!(
            "printf(\"libc.{field} %zu\\n\", offsetof(struct dnslens_libc_call, {field}));\n"
        );
    }
    program += "printf(\"libc.size %zu\\n\", sizeof(struct dnslens_libc_call));\n";
    program += "printf(\"LIBC_NAME_LEN %d\\n\", DNSLENS_LIBC_NAME_LEN);\n";
    for &function in LibcFunction::ALL {
        let upper = function.name().to_uppercase();
        program += &format!("printf(\"LIBC_{upper} %d\\n\", DNSLENS_LIBC_{upper});\n");
    }
    for field in ["cgroup_id", "cgroup_v1_id"] {
        program += &format!(
            "printf(\"source_key.{field} %zu\\n\", offsetof(struct dnslens_source_key, {field}));\n"
        );
    }
    for field in [
        "window_start_ns",
        "window_bytes",
        "over_share",
        "ringbuf_full",
        "last_tgid",
        "last_comm",
    ] {
        program += &format!(
            "printf(\"source.{field} %zu\\n\", offsetof(struct dnslens_source, {field}));\n"
        );
    }
    program += "printf(\"source_key.size %zu\\n\", sizeof(struct dnslens_source_key));\n";
    program += "printf(\"source.size %zu\\n\", sizeof(struct dnslens_source));\n";
    program += "printf(\"MAX_SOURCES %d\\n\", DNSLENS_MAX_SOURCES);\n";
    program += "printf(\"PATH_LEN %d\\n\", DNSLENS_PATH_LEN);\n";
    program += "printf(\"MAX_PAYLOAD %d\\n\", DNSLENS_MAX_PAYLOAD);\n";
    program += "printf(\"MAX_PORTS %d\\n\", DNSLENS_MAX_PORTS);\n";
    program += "printf(\"CNT_MAX %d\\n\", DNSLENS_CNT_MAX);\n";
    program += "printf(\"RESOLVER_RENEWAL_NS %llu\\n\", DNSLENS_RESOLVER_RENEWAL_NS);\n";
    for kind in ["DNS", "EXEC", "CONNECT", "LIBC"] {
        program += &format!("printf(\"RECORD_{kind} %d\\n\", DNSLENS_RECORD_{kind});\n");
    }
    for &counter in KernelCounter::ALL {
        let upper = counter.name().to_uppercase();
        program += &format!("printf(\"CNT_{upper} %d\\n\", DNSLENS_CNT_{upper});\n");
    }
    for &direction in Direction::ALL {
        let upper = direction.name().to_uppercase();
        program += &format!("printf(\"DIR_{upper} %d\\n\", DNSLENS_DIR_{upper});\n");
    }
    for &syscall in Syscall::ALL {
        let upper = syscall.name().to_uppercase();
        program += &format!("printf(\"SYS_{upper} %d\\n\", DNSLENS_SYS_{upper});\n");
    }
    program += "printf(\"size %zu\\n\", sizeof(struct dnslens_event));\nreturn 0;\n}\n";

    let dir = std::env::temp_dir().join(format!("dnslens-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("layout.c");
    let binary = dir.join("layout");
    std::fs::write(&source, program).unwrap();
    let bpf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bpf");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .arg("-I")
        .arg(&bpf_dir)
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .status()
        .expect("a C compiler (cc) is needed for the layout check");
    assert!(status.success(), "{cc} failed on bpf/dnslens.h");
    let output = Command::new(&binary).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let c: std::collections::HashMap<&str, usize> = text
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(' ').unwrap();
            (name, value.parse().unwrap())
        })
        .collect();

    for (name, offset) in rust_fields {
        assert_eq!(c[name], offset, "offset of {name}");
    }
    assert_eq!(
        c["payload"],
        std::mem::size_of::<EventHeader>(),
        "header ends where payload starts"
    );
    assert_eq!(c["size"], std::mem::size_of::<EventHeader>() + MAX_PAYLOAD);
    assert_eq!(c["MAX_PAYLOAD"], MAX_PAYLOAD);
    assert_eq!(c["MAX_PORTS"], MAX_PORTS);
    assert_eq!(c["exec.kind"], offset_of!(ExecHeader, kind));
    assert_eq!(c["exec.tgid"], offset_of!(ExecHeader, tgid));
    assert_eq!(
        c["exec.process_start_ns"],
        offset_of!(ExecHeader, process_start_ns)
    );
    assert_eq!(c["exec.filename"], offset_of!(ExecHeader, filename));
    assert_eq!(c["exec.size"], std::mem::size_of::<ExecHeader>());
    assert_eq!(c["PATH_LEN"], dnslens_abi::PATH_LEN);
    assert_eq!(c["libc.entry_ns"], offset_of!(LibcCallTail, entry_ns));
    assert_eq!(c["libc.status"], offset_of!(LibcCallTail, status));
    assert_eq!(c["libc.function"], offset_of!(LibcCallTail, function));
    assert_eq!(c["libc._pad"], offset_of!(LibcCallTail, _pad));
    assert_eq!(c["libc.name"], offset_of!(LibcCallTail, name));
    assert_eq!(c["libc.size"], std::mem::size_of::<LibcCallTail>());
    assert_eq!(c["LIBC_NAME_LEN"], dnslens_abi::LIBC_NAME_LEN);
    for &function in LibcFunction::ALL {
        let name = format!("LIBC_{}", function.name().to_uppercase());
        assert_eq!(c[name.as_str()], function as usize, "DNSLENS_{name}");
    }
    // The loader reads the sources map as arrays of words in field order.
    let key = SourceKey::from_words([1, 2]);
    assert_eq!(c["source_key.size"], std::mem::size_of::<SourceKey>());
    assert_eq!(c["source_key.cgroup_id"], offset_of!(SourceKey, cgroup_id));
    assert_eq!(
        c["source_key.cgroup_v1_id"],
        offset_of!(SourceKey, cgroup_v1_id)
    );
    assert_eq!((key.cgroup_id, key.cgroup_v1_id), (1, 2));
    let mut words = [1, 2, 3, 4, 0, 0, 0];
    words[4] = u64::from_ne_bytes([7, 0, 0, 0, 0, 0, 0, 0]);
    words[5] = u64::from_ne_bytes(*b"flooder\0");
    let source = Source::from_words(words);
    assert_eq!((source.last_tgid, source.last_comm()), (7, "flooder"));
    assert_eq!(c["source.last_tgid"], offset_of!(Source, last_tgid));
    assert_eq!(c["source.last_comm"], offset_of!(Source, last_comm));
    assert_eq!(c["source.size"], std::mem::size_of::<Source>());
    assert_eq!(
        c["source.window_start_ns"],
        offset_of!(Source, window_start_ns)
    );
    assert_eq!(c["source.window_bytes"], offset_of!(Source, window_bytes));
    assert_eq!(c["source.over_share"], offset_of!(Source, over_share));
    assert_eq!(c["source.ringbuf_full"], offset_of!(Source, ringbuf_full));
    assert_eq!(
        [
            source.window_start_ns,
            source.window_bytes,
            source.over_share,
            source.ringbuf_full
        ],
        [1, 2, 3, 4]
    );
    assert_eq!(c["MAX_SOURCES"], dnslens_abi::MAX_SOURCES);
    assert_eq!(c["RESOLVER_RENEWAL_NS"] as u64, RESOLVER_RENEWAL_NS);
    // One list, indexed by the C enum: every counter at its index, and no other.
    assert_eq!(c["CNT_MAX"], KernelCounter::ALL.len());
    for (index, &counter) in KernelCounter::ALL.iter().enumerate() {
        let name = format!("CNT_{}", counter.name().to_uppercase());
        assert_eq!(c[name.as_str()], index, "DNSLENS_{name}");
        assert_eq!(counter as usize, index, "{counter:?}");
    }
    for &direction in Direction::ALL {
        let value = c[format!("DIR_{}", direction.name().to_uppercase()).as_str()];
        let header = EventHeader {
            direction: value as u8,
            ..EventHeader::default()
        };
        assert_eq!(
            header.direction(),
            Ok(direction),
            "DNSLENS_DIR_* value {value}"
        );
    }
    assert_eq!(c["RECORD_DNS"], dnslens_abi::RECORD_DNS as usize);
    assert_eq!(c["RECORD_EXEC"], dnslens_abi::RECORD_EXEC as usize);
    assert_eq!(c["RECORD_CONNECT"], dnslens_abi::RECORD_CONNECT as usize);
    assert_eq!(c["RECORD_LIBC"], dnslens_abi::RECORD_LIBC as usize);
    // Every `enum dnslens_syscall` value reads back as its syscall.
    for &syscall in Syscall::ALL {
        let value = c[format!("SYS_{}", syscall.name().to_uppercase()).as_str()];
        let header = EventHeader {
            syscall: value as u8,
            ..EventHeader::default()
        };
        assert_eq!(header.syscall(), Ok(syscall), "DNSLENS_SYS_* value {value}");
    }
}
