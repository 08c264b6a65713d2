/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of what crosses from the kernel to dnslens: the ring-buffer event and the
 * counters map layout. Compiled by clang for BPF and by the host C compiler for the layout test
 * (crates/abi/tests/layout.rs), so it uses only fixed-width types and explicit padding.
 */
#ifndef DNSLENS_H
#define DNSLENS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Bytes of one DNS message copied per event: more than the 1,232-byte EDNS default, a power of
 * two so the BPF verifier can bound copies with a mask. */
#define DNSLENS_MAX_PAYLOAD 4096
#define DNSLENS_COMM_LEN 16
/* Bytes kept of a cgroup directory name: "cri-containerd-<64 hex>.scope" is 85. */
#define DNSLENS_CGROUP_NAME_LEN 128
/* Ports that count as DNS, set by userspace before load. */
#define DNSLENS_MAX_PORTS 8
/* Messages per sendmmsg/recvmmsg call and iovecs per message that are read. */
#define DNSLENS_MAX_MMSG 8
#define DNSLENS_MAX_IOV 4

/* Bytes of an exec'd file's path kept per exec record. */
#define DNSLENS_PATH_LEN 256

/* First field of every ring-buffer record. */
enum dnslens_record_kind {
	DNSLENS_RECORD_DNS = 1,   /* struct dnslens_event */
	DNSLENS_RECORD_EXEC = 2,  /* struct dnslens_exec_event */
	DNSLENS_RECORD_CONNECT = 3, /* struct dnslens_event header only: a TCP connect */
	DNSLENS_RECORD_LIBC = 4,  /* struct dnslens_event header + struct dnslens_libc_call */
};

/* Bytes kept of the name a resolver call was passed (a DNS name has at most 253). */
#define DNSLENS_LIBC_NAME_LEN 256

/* The libc resolver functions hooked with uprobes. gethostbyname and gethostbyname2 call the
 * same code as the _r ones, which the hooks therefore also see. */
enum dnslens_libc_function {
	DNSLENS_LIBC_GETADDRINFO = 1,
	DNSLENS_LIBC_GETHOSTBYNAME_R = 2,
	DNSLENS_LIBC_GETHOSTBYNAME2_R = 3,
};

enum dnslens_direction {
	DNSLENS_DIR_SEND = 1,
	DNSLENS_DIR_RECV = 2,
};

enum dnslens_syscall {
	DNSLENS_SYS_SENDTO = 1,
	DNSLENS_SYS_SENDMSG = 2,
	DNSLENS_SYS_SENDMMSG = 3,
	DNSLENS_SYS_WRITE = 4,
	DNSLENS_SYS_WRITEV = 5,
	DNSLENS_SYS_RECVFROM = 6,
	DNSLENS_SYS_RECVMSG = 7,
	DNSLENS_SYS_RECVMMSG = 8,
	DNSLENS_SYS_READ = 9,
	DNSLENS_SYS_READV = 10,
	DNSLENS_SYS_CONNECT = 11,
};

/* Indexes into the per-CPU `counters` array. */
enum dnslens_counter {
	DNSLENS_CNT_EVENTS = 0,      /* events (DNS, connect, libc) written to the ring buffer */
	DNSLENS_CNT_RINGBUF_FULL,    /* events (DNS, connect, libc) lost: ring buffer full */
	DNSLENS_CNT_READ_FAILED,     /* events lost: user memory could not be read */
	DNSLENS_CNT_TRUNCATED,       /* events whose payload was cut at DNSLENS_MAX_PAYLOAD */
	DNSLENS_CNT_MMSG_SKIPPED,    /* messages past DNSLENS_MAX_MMSG in one call, not captured */
	DNSLENS_CNT_IOV_SKIPPED,     /* iovecs past DNSLENS_MAX_IOV in one message, not captured */
	DNSLENS_CNT_OTHER_PATH,      /* DNS socket I/O not from a hooked syscall (sendfile, io_uring,
	                              * kernel callers): its buffer is unknown, not captured */
	DNSLENS_CNT_EXEC_LOST,       /* exec records lost: ring buffer full */
	DNSLENS_CNT_OVER_SHARE,      /* events (DNS, connect, libc) dropped: their cgroup was over its
	                              * share while the ring buffer was under pressure */
	DNSLENS_CNT_SERVER_SIDE,     /* server-side UDP messages kept in the kernel: no output shows
	                              * them (see DNSLENS_RESOLVER_RENEWAL_NS) */
	DNSLENS_CNT_MAX,
};

/* Fair share of the ring buffer. While it is less than half full every event goes in. From half
 * full on, a cgroup may add at most 1/DNSLENS_SHARE_DIVISOR of its size per
 * DNSLENS_SHARE_WINDOW_NS; beyond that its events are dropped and counted against it, so a
 * flooding workload cannot take the room every other workload's few events need. The last
 * 1/DNSLENS_EXEC_RESERVE_DIVISOR is kept for exec records, which the unknown-binary detector
 * needs. */
#define DNSLENS_SHARE_WINDOW_NS 100000000ULL
#define DNSLENS_SHARE_DIVISOR 64
#define DNSLENS_EXEC_RESERVE_DIVISOR 16
/* Cgroups whose share is tracked at once (least recently used ones are forgotten). */
#define DNSLENS_MAX_SOURCES 4096

/* Where no output shows a DNS server's side of an exchange (the client's send is the server's
 * receive), one UDP message per server process per DNSLENS_RESOLVER_RENEWAL_NS goes to
 * userspace, enough for the detectors to know the process serves DNS; the rest stay here. */
#define DNSLENS_RESOLVER_RENEWAL_NS 10000000000ULL
/* Server processes remembered at once, by tgid modulo this: two that share a slot just renew
 * more often. */
#define DNSLENS_SERVER_SLOTS 1024

/* Key of the `sources` map: the cgroup an event's task is in, as the event names it. */
struct dnslens_source_key {
	__u64 cgroup_id;          /* as dnslens_event.cgroup_id */
	__u64 cgroup_v1_id;       /* as dnslens_event.cgroup_v1_id */
};

/* Value of the `sources` map: a cgroup's budget window and the events it lost. */
struct dnslens_source {
	__u64 window_start_ns;    /* bpf_ktime_get_ns when the current window began */
	__u64 window_bytes;       /* bytes it added in that window while under pressure */
	__u64 over_share;         /* events dropped: over its share (DNSLENS_CNT_OVER_SHARE) */
	__u64 ringbuf_full;       /* events dropped: ring buffer full (DNSLENS_CNT_RINGBUF_FULL) */
	__u32 last_tgid;          /* the process of the last dropped event: where many processes */
	__u32 _pad;               /* share a cgroup (the host's root), the cgroup names nobody */
	char last_comm[DNSLENS_COMM_LEN];    /* its leader_comm */
};

/* A DNS message (DNSLENS_RECORD_DNS), or a TCP connect (DNSLENS_RECORD_CONNECT: the header up to
 * `payload`, payload_len and msg_len 0, direction send, syscall connect, remote = destination). */
struct dnslens_event {
	__u32 kind;               /* DNSLENS_RECORD_DNS or DNSLENS_RECORD_CONNECT */
	__u32 tgid;
	__u64 timestamp_ns;       /* CLOCK_MONOTONIC (bpf_ktime_get_ns) at syscall exit, or connect */
	__u64 process_start_ns;   /* group leader start time: tells a reused pid apart */
	__u64 cgroup_id;          /* cgroup v2 id (inode of the cgroup directory) */
	__u64 cgroup_v1_id;       /* id in the v1 memory hierarchy; 0 where there is none */
	__u64 socket_ino;         /* socket inode, as in /proc/PID/fd "socket:[INO]" */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 netns_ino;
	__u32 msg_len;            /* bytes the syscall moved for this message */
	__u32 payload_len;        /* bytes captured below: min(msg_len, DNSLENS_MAX_PAYLOAD) */
	__u16 family;             /* AF_INET or AF_INET6 */
	__u16 local_port;         /* host byte order */
	__u16 remote_port;        /* host byte order */
	__u8 protocol;            /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 direction;           /* enum dnslens_direction */
	__u8 syscall;             /* enum dnslens_syscall */
	__u8 msg_index;           /* position in a sendmmsg/recvmmsg batch */
	__u8 _pad[6];
	__u8 local_addr[16];      /* network byte order; IPv4 in the first 4 bytes */
	__u8 remote_addr[16];
	char comm[DNSLENS_COMM_LEN];         /* thread name */
	char leader_comm[DNSLENS_COMM_LEN];  /* process (group leader) name */
	/* The task's cgroup directory name and its parent's ("" for the root), from v2, or from the
	 * v1 memory hierarchy when v2 says root: names outlive a removed cgroup's path. */
	char cgroup_name[DNSLENS_CGROUP_NAME_LEN];
	char cgroup_parent_name[DNSLENS_CGROUP_NAME_LEN];
	__u8 payload[DNSLENS_MAX_PAYLOAD];   /* only payload_len bytes are sent */
};

/* A resolver call that returned (DNSLENS_RECORD_LIBC): the payload of a struct dnslens_event
 * whose header holds the calling task (timestamp_ns: the return; no socket: family, ports,
 * addresses, protocol, direction and syscall are 0) and whose payload_len is this size. */
struct dnslens_libc_call {
	__u64 entry_ns;           /* bpf_ktime_get_ns at the call */
	__s32 status;             /* getaddrinfo: its return (0 or EAI_*); _r: 0 when a result was
	                           * returned, else *h_errnop (HOST_NOT_FOUND...), -1 unreadable */
	__u8 function;            /* enum dnslens_libc_function */
	__u8 _pad[3];
	char name[DNSLENS_LIBC_NAME_LEN]; /* as passed, NUL-terminated; "" when unreadable */
};

/* An exec, so a process that exits before userspace reads /proc still has its executable. */
struct dnslens_exec_event {
	__u32 kind;               /* DNSLENS_RECORD_EXEC */
	__u32 tgid;
	__u64 process_start_ns;
	char filename[DNSLENS_PATH_LEN]; /* as passed to execve, NUL-terminated */
};

#endif /* DNSLENS_H */
