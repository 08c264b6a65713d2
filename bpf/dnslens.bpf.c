// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * dnslens kernel side: copies DNS messages that processes send or receive into a ring buffer,
 * and reports the TCP connects they make (inet_sock_set_state, at the end of this file).
 *
 * One hook at syscall exit serves every send/receive syscall: the return value says how much was
 * moved and the arguments are still in the task's saved registers, so there is no enter hook and
 * no enter->exit map. That halves what the host's other I/O pays, and every read and write on the
 * host pays it: a non-socket fd is rejected after the fd-table lookup and one read of the file.
 * The preferred attachment is the BTF raw tracepoint sys_exit (Linux 5.5+); where it is refused,
 * the same code runs from the sys_exit_* syscall tracepoints (bpf_task_pt_regs, Linux 5.15+).
 * Parsing happens in userspace.
 */
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "dnslens.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by userspace before load. */
const volatile __u16 dns_ports[DNSLENS_MAX_PORTS] = {53};
const volatile __u32 dns_port_count = 1;
/* Index of the memory controller in css_set.subsys (its line in /proc/cgroups); >= 64: none. */
const volatile __u32 memory_subsys_id = 0xffffffff;
/* The ring buffer's size in bytes, set by the loader: a constant where a query is a call. */
const volatile __u64 ring_size = 0;
/* 0 when no output shows the server side: see DNSLENS_RESOLVER_RENEWAL_NS. */
const volatile __u8 server_side_events = 1;
/* socket_file_ops, learned from the first socket seen (every socket file has it): from then on
 * one read of file->f_op tells a socket from anything else. */
__u64 socket_fops = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* Each cgroup's share of the ring buffer and its losses; see DNSLENS_SHARE_DIVISOR. Touched only
 * under pressure or on a loss, so a calm node pays one ring-buffer query per event. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DNSLENS_MAX_SOURCES);
	__type(key, struct dnslens_source_key);
	__type(value, struct dnslens_source);
} sources SEC(".maps");

/* When a server process last had a message go to userspace. Plain memory, not a map: a lookup
 * here is a load, where a hash map costs a helper call per message. */
struct served_slot {
	__u32 tgid;
	__u32 _pad;
	__u64 process_start_ns;
	__u64 passed_ns;
};
struct served_slot served_slots[DNSLENS_SERVER_SLOTS];

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DNSLENS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* The event is built here, not on the 512-byte stack. Copies use a masked offset and a masked
 * size (each < 2 * DNSLENS_MAX_PAYLOAD) so the verifier can prove them in bounds; the slack
 * makes room for that proof, not for data. */
#define COPY_MASK (2 * DNSLENS_MAX_PAYLOAD - 1)

/* Masks in a way clang cannot drop as redundant, so the verifier sees the bound it needs. */
static __always_inline __u64 copy_bound(__u64 v)
{
	asm volatile("%0 &= %1" : "+r"(v) : "i"(COPY_MASK));
	return v;
}
struct scratch {
	struct dnslens_event event;
	__u8 slack[2 * DNSLENS_MAX_PAYLOAD];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

enum arg_kind {
	ARG_BUF = 1,   /* buf + count: write, read, sendto, recvfrom */
	ARG_IOV,       /* struct iovec array + count: writev, readv */
	ARG_MSGHDR,    /* struct user_msghdr: sendmsg, recvmsg */
	ARG_MMSGHDR,   /* struct mmsghdr array + vlen: sendmmsg, recvmmsg */
};

/* One syscall, read back from the task's registers at exit. */
struct call {
	__u64 fd;
	__u64 data;     /* buf, iovec array, msghdr or mmsghdr array */
	__u64 count;    /* buf length, iovec count or vlen */
	__u64 addr;     /* sendto destination / recvfrom source sockaddr, 0 if none */
	__u64 sk;
	__u64 socket_ino;
	__u8 kind;      /* enum arg_kind */
	__u8 syscall;
	__u8 direction;
	__u8 need_dns_peer; /* unconnected UDP socket: each datagram's peer port is checked */
	__u8 to_server;     /* unconnected UDP send to a DNS port: remember the server */
	__u8 dest_known;    /* dest holds the send's destination, already read from the user */
	struct sockaddr_inet dest;
};

/* Unconnected UDP sockets that sent to a DNS port, with the server they last sent to: their
 * receives are DNS candidates, and a receive that does not ask for the sender (plain recv, as
 * dnsperf does) is taken to come from that server. This map serves the syscall modes, which
 * find sockets as addresses. */
struct dns_server {
	__u8 addr[16];
	__u16 port;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock * */
	__type(value, struct dns_server);
} dns_sockets SEC(".maps");

/* The same, kept with the socket itself in socket mode, where the hooks have the socket as a
 * BTF pointer: a receive on any unconnected UDP socket looks it up, and socket storage is one
 * load where the hash costs a lookup (the largest part of the non-DNS UDP receive's hook). It
 * also goes away with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct dns_server);
} socket_servers SEC(".maps");

/* The source address the kernel chose for the last DNS datagram of a wildcard-bound UDP socket:
 * such a socket has no local address of its own (musl, kdig, dnsperf send that way). */
struct local_addr {
	__u8 addr[16];
	__u16 family;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock * */
	__type(value, struct local_addr);
} udp_sources SEC(".maps");

/* Sender of the DNS datagram a task is receiving, from cgroup/recvmsg{4,6}, for the
 * sock_recv_length hook that fires next in the same syscall: the user's sockaddr is written only
 * after it. */
struct datagram_peer {
	__u64 pid_tgid;
	__u64 time_ns;
	__u8 remote_addr[16];
	__u16 remote_port;
	__u16 local_port;
	__u16 family;
};

/* Per CPU, not per task: the two hooks run back to back in one syscall, and a lookup here is far
 * cheaper than in a hash map on every UDP receive of the host. A task that moved to another CPU
 * in between finds no record (its pid_tgid is checked), and the receive's peer stays unknown. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct datagram_peer);
} datagram_peers SEC(".maps");

/* A response that a server's socket (a DNS port of its own, no peer) is sending, seen by
 * net_dev_queue for sock_send_length, which fires next in the same syscall: the packet's bytes
 * say what the user's buffer would, for one read of kernel memory instead of three of the
 * user's. Set only while no output shows the server side. */
struct server_reply {
	__u64 pid_tgid;
	__u64 sk;
	__u64 len;                /* UDP payload bytes: what the send returns */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct server_reply);
} server_replies SEC(".maps");

/* A task's cgroups as its events name them, read once and kept with the task: the names cost
 * two string reads, and every helper call pays for the kernel's return-stack mitigations. Valid
 * while the task keeps its css_set and its v2 cgroup: a move between cgroups gives the task
 * another css_set. */
struct task_cgroups {
	__u64 cset;               /* task->cgroups when read */
	__u64 cgroup_id;
	__u64 cgroup_v1_id;
	char cgroup_name[DNSLENS_CGROUP_NAME_LEN];
	char cgroup_parent_name[DNSLENS_CGROUP_NAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_cgroups);
} task_cgroups SEC(".maps");

/* Where they are read when the task's storage cannot be had (no memory for it). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct task_cgroups);
} task_cgroups_scratch SEC(".maps");

/* Which message of a sendmmsg/recvmmsg the socket hooks are at: they fire once per message. */
struct mmsg_cursor {
	__u64 msgvec;
	__u64 time_ns;
	__u64 next;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct mmsg_cursor);
} mmsg_cursors SEC(".maps");

/* bpf_get_current_pid_tgid's value, as plain loads. */
static __always_inline __u64 task_pid_tgid(struct task_struct *task)
{
	return (__u64)task->tgid << 32 | (__u32)task->pid;
}

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline bool is_dns_port(__u16 port)
{
#pragma unroll
	for (int i = 0; i < DNSLENS_MAX_PORTS; i++) {
		if (i >= dns_port_count)
			break;
		if (dns_ports[i] == port)
			return true;
	}
	return false;
}

static __always_inline bool same_addr(const __u8 *a, const __u8 *b)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (a[i] != b[i])
			return false;
	}
	return true;
}

/* fd -> struct sock of the current task, or NULL when the fd is not a socket. This runs for every
 * hooked syscall on the host, so the common case (not a socket) takes the fewest reads: the fd
 * table through BTF pointers, then one read of the file's operations. */
static __always_inline struct sock *fd_to_sock(struct task_struct *task, __u64 fd,
					       struct file **filep)
{
	struct fdtable *fdt = task->files->fdt;
	if (fd >= fdt->max_fds)
		return NULL;
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), fdt->fd + fd);
	if (!file)
		return NULL;
	__u64 fops = (__u64)BPF_CORE_READ(file, f_op);
	if (socket_fops) {
		if (fops != socket_fops)
			return NULL;
	} else {
		if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
			return NULL;
		socket_fops = fops;
	}
	*filep = file;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	return BPF_CORE_READ(sock, sk);
}

/* Port of a user sockaddr (host order), 0 when absent or not INET. */
static __always_inline __u16 user_sockaddr_port(const void *addr)
{
	struct {
		__u16 family;
		__be16 port;
	} head = {};
	if (!addr || bpf_probe_read_user(&head, sizeof(head), addr))
		return 0;
	if (head.family != AF_INET && head.family != AF_INET6)
		return 0;
	return bpf_ntohs(head.port);
}

/* The destination a send names (sendto's address, msg_name of sendmsg or of sendmmsg's first
 * message), NULL when the socket's own peer applies. */
static __always_inline const void *send_destination(const struct call *call)
{
	void *name = NULL;
	if (call->kind == ARG_BUF)
		return (const void *)call->addr;
	if (call->kind == ARG_MSGHDR || call->kind == ARG_MMSGHDR)
		bpf_probe_read_user(&name, sizeof(name), (const void *)call->data);
	return name;
}

/* Whether the call's socket talks DNS; fills call->sk and call->socket_ino. Ports are read
 * first (one read for both): most sockets are rejected there. */
static __always_inline bool classify(struct task_struct *task, struct call *call)
{
	struct file *file = NULL;
	struct sock *sk = fd_to_sock(task, call->fd, &file);
	if (!sk)
		return false;
	__u32 ports = BPF_CORE_READ(sk, __sk_common.skc_portpair);
	/* skc_dport (network order) then skc_num (host order), little-endian halves of the pair. */
	__u16 remote_port = bpf_ntohs((__u16)ports);
	__u16 local_port = ports >> 16;
	bool dns_port = is_dns_port(local_port) || is_dns_port(remote_port);
	__u64 key = (__u64)sk;
	if (!dns_port) {
		/* Only unconnected UDP remains: a send naming a DNS port, or a receive on a socket
		 * that did such a send. */
		if (call->direction == DNSLENS_DIR_RECV) {
			if (!bpf_map_lookup_elem(&dns_sockets, &key))
				return false;
			call->need_dns_peer = 1;
		} else if (!is_dns_port(user_sockaddr_port(send_destination(call)))) {
			return false;
		}
	}
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return false;
	__u16 protocol = BPF_CORE_READ(sk, sk_protocol);
	if (protocol != IPPROTO_UDP && protocol != IPPROTO_TCP)
		return false;
	if (!dns_port && call->direction == DNSLENS_DIR_SEND) {
		if (protocol != IPPROTO_UDP)
			return false;
		call->to_server = 1;
	}
	call->sk = key;
	call->socket_ino = BPF_CORE_READ(file, f_inode, i_ino);
	return true;
}

/* kernfs_node.parent was renamed __parent in Linux 6.15. */
struct kernfs_node___pre615 {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return kn->__parent;
	return ((struct kernfs_node___pre615 *)kn)->parent;
}

/* The cgroup's own directory name and its parent's (empty when the parent is the root): enough
 * to tell the container and the pod even after the cgroup is gone, when no path can be read. */
static __always_inline void read_cgroup_names(struct task_cgroups *c, struct kernfs_node *kn)
{
	c->cgroup_name[0] = 0;
	c->cgroup_parent_name[0] = 0;
	struct kernfs_node *parent = kn_parent(kn);
	if (!parent)
		return;
	bpf_probe_read_kernel_str(c->cgroup_name, sizeof(c->cgroup_name), kn->name);
	if (kn_parent(parent))
		bpf_probe_read_kernel_str(c->cgroup_parent_name, sizeof(c->cgroup_parent_name),
					  parent->name);
}

/* Reads the task's cgroups into `c`. */
static __always_inline void read_task_cgroups(struct task_cgroups *c, struct task_struct *task,
					      __u64 cgroup_id)
{
	struct css_set *cset = task->cgroups;
	struct kernfs_node *named = cset->dfl_cgrp->kn;
	c->cset = (__u64)cset;
	c->cgroup_id = cgroup_id;
	c->cgroup_v1_id = 0;
	/* The loader sets memory_subsys_id from this kernel's own numbering, so the index is
	 * within the array, and a constant to the verifier. */
	if (memory_subsys_id < 64) {
		struct cgroup_subsys_state *css = cset->subsys[memory_subsys_id];
		struct kernfs_node *v1 = css ? css->cgroup->kn : NULL;
		c->cgroup_v1_id = v1 ? v1->id : 0;
		/* Hybrid hosts may place containers only in v1: name the v1 cgroup then. */
		if (v1 && !kn_parent(named))
			named = v1;
	}
	read_cgroup_names(c, named);
}

/* Fills the event's cgroup fields with the current task's, from its storage when still valid.
 * Global, so that the verifier checks it once, not at each of submit()'s call sites (7 s of
 * loading where 0.5 s do); so it takes no task pointer, which needs Linux 6.8 in a global. */
__noinline int fill_cgroups(struct dnslens_event *ev)
{
	if (!ev)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	/* What bpf_get_current_cgroup_id returns, as plain loads. */
	__u64 cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	struct task_cgroups *c = bpf_task_storage_get(&task_cgroups, task, 0,
						      BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c) {
		__u32 zero = 0;
		c = bpf_map_lookup_elem(&task_cgroups_scratch, &zero);
		if (!c)
			return 0;
		read_task_cgroups(c, task, cgroup_id);
	} else if (c->cset != (__u64)task->cgroups || c->cgroup_id != cgroup_id) {
		read_task_cgroups(c, task, cgroup_id);
	}
	ev->cgroup_id = c->cgroup_id;
	ev->cgroup_v1_id = c->cgroup_v1_id;
	__builtin_memcpy(ev->cgroup_name, c->cgroup_name, sizeof(ev->cgroup_name));
	__builtin_memcpy(ev->cgroup_parent_name, c->cgroup_parent_name,
			 sizeof(ev->cgroup_parent_name));
	return 0;
}

static __always_inline bool is_wildcard(const __u8 addr[16])
{
	const __u64 *words = (const __u64 *)addr;
	return words[0] == 0 && words[1] == 0;
}

/* The socket's fields, written once for the two ways of reading them: plain loads through a
 * BTF pointer (a hook's argument), or bpf_probe_read_kernel from an address (the syscall modes
 * find the socket through the fd table). */
#define FILL_SOCKET(ev, sk, GET, GET_INTO)                                                    \
	({                                                                                    \
		(ev)->family = GET(sk, __sk_common.skc_family);                               \
		(ev)->local_port = GET(sk, __sk_common.skc_num);                              \
		(ev)->remote_port = bpf_ntohs(GET(sk, __sk_common.skc_dport));                \
		(ev)->protocol = GET(sk, sk_protocol);                                        \
		if ((ev)->family == AF_INET6) {                                               \
			GET_INTO(&(ev)->local_addr, sk, __sk_common.skc_v6_rcv_saddr);       \
			GET_INTO(&(ev)->remote_addr, sk, __sk_common.skc_v6_daddr);           \
		} else {                                                                      \
			__builtin_memset((ev)->local_addr, 0, sizeof((ev)->local_addr));     \
			__builtin_memset((ev)->remote_addr, 0, sizeof((ev)->remote_addr));   \
			GET_INTO((__be32 *)(ev)->local_addr, sk, __sk_common.skc_rcv_saddr);  \
			GET_INTO((__be32 *)(ev)->remote_addr, sk, __sk_common.skc_daddr);     \
		}                                                                             \
	})
#define LOAD(p, field) ((p)->field)
#define LOAD_INTO(dst, p, field) __builtin_memcpy(dst, &(p)->field, sizeof(*(dst)))

/* Fills the attribution of the current task: what every record kind with this header shares. */
static __always_inline void fill_task(struct dnslens_event *ev, struct task_struct *task,
				      __u32 kind, __u64 now)
{
	/* task is the current task as a BTF pointer (bpf_get_current_task_btf): its fields are
	 * plain loads. BPF_CORE_READ would call bpf_probe_read_kernel for each, and the
	 * bpf_get_current_* helpers are calls too: on a kernel with return-stack mitigations
	 * (Safe RET) each call costs more than the loads it replaces. */
	struct task_struct *leader = task->group_leader;

	ev->kind = kind;
	ev->timestamp_ns = now;
	ev->process_start_ns = leader->start_time;
	/* Read in submit(), once a record is sure to go out. */
	ev->cgroup_id = 0;
	ev->tgid = task->tgid;
	ev->tid = task->pid;
	ev->ppid = task->real_parent->tgid;
	ev->uid = task->cred->uid.val;
	ev->netns_ino = task->nsproxy->net_ns->ns.inum;
	/* The kernel keeps names NUL-terminated within their 16 bytes. */
	__builtin_memcpy(ev->comm, task->comm, sizeof(ev->comm));
	__builtin_memcpy(ev->leader_comm, leader->comm, sizeof(ev->leader_comm));
}

/* Fills the parts of the event that are the same for every message of one call: the socket and
 * the attribution of the current task. Connect records are made by the same code. sk is the
 * socket as a BTF pointer where the hook has one, else NULL and call->sk is read. */
static __always_inline void fill_header(struct dnslens_event *ev, struct task_struct *task,
					const struct call *call, __u32 kind, struct sock *sk,
					__u64 now)
{
	fill_task(ev, task, kind, now);
	ev->socket_ino = call->socket_ino;
	ev->direction = call->direction;
	ev->syscall = call->syscall;
	ev->msg_index = 0;
	if (sk) {
		FILL_SOCKET(ev, sk, LOAD, LOAD_INTO);
	} else {
		/* A plain variable: inside BPF_CORE_READ, call->sk would be relocated as well. */
		struct sock *found = (struct sock *)call->sk;
		FILL_SOCKET(ev, found, BPF_CORE_READ, BPF_CORE_READ_INTO);
	}
	if (ev->protocol == IPPROTO_UDP && is_wildcard(ev->local_addr)) {
		struct local_addr *src = bpf_map_lookup_elem(&udp_sources, &call->sk);
		if (src && src->family == ev->family)
			__builtin_memcpy(ev->local_addr, src->addr, sizeof(ev->local_addr));
	}
}

/* Reads a user sockaddr; false when there is none. */
static __always_inline bool read_user_sockaddr(const void *addr, struct sockaddr_inet *sa)
{
	return addr && !bpf_probe_read_user(sa, sizeof(*sa), addr);
}

/* Takes the peer from a sockaddr read from the user (sendto/sendmsg destination,
 * recvfrom/recvmsg source), NULL when there was none. Returns false when `need_dns_peer` is set
 * and the peer is not on a DNS port. */
static __always_inline bool apply_peer(struct dnslens_event *ev, const struct sockaddr_inet *peer,
				       bool need_dns_peer)
{
	if (!peer)
		return !need_dns_peer || is_dns_port(ev->remote_port);
	struct sockaddr_inet sa = *peer;
	__u16 port = bpf_ntohs(sa.port);
	if (need_dns_peer && !is_dns_port(port))
		return false;
	if (sa.family == AF_INET) {
		__builtin_memset(ev->remote_addr, 0, sizeof(ev->remote_addr));
		if (ev->family == AF_INET6) {
			/* An IPv6 socket talking IPv4: store the peer v4-mapped. */
			ev->remote_addr[10] = 0xff;
			ev->remote_addr[11] = 0xff;
			__builtin_memcpy(&ev->remote_addr[12], &sa.v4, 4);
		} else {
			__builtin_memcpy(ev->remote_addr, &sa.v4, 4);
		}
		ev->remote_port = port;
	} else if (sa.family == AF_INET6 && ev->family == AF_INET6) {
		__builtin_memcpy(ev->remote_addr, sa.v6, 16);
		ev->remote_port = port;
	} else if (need_dns_peer) {
		return false;
	}
	return true;
}

static __always_inline bool apply_user_peer(struct dnslens_event *ev, const void *addr,
					    bool need_dns_peer)
{
	struct sockaddr_inet sa = {};
	return apply_peer(ev, read_user_sockaddr(addr, &sa) ? &sa : NULL, need_dns_peer);
}

static __always_inline void copy_flat(struct dnslens_event *ev, const void *buf, __u64 len)
{
	__u32 n = len > DNSLENS_MAX_PAYLOAD ? DNSLENS_MAX_PAYLOAD : len;
	ev->payload_len = 0;
	if (n && !bpf_probe_read_user(ev->payload, copy_bound(n), buf))
		ev->payload_len = n;
}

/* Copies up to `len` bytes spread over an iovec array into the payload, in order. */
static __always_inline void copy_iov(struct dnslens_event *ev, const struct iovec *iov,
				     __u64 iovcnt, __u64 len)
{
	__u32 off = 0;
	ev->payload_len = 0;
	if (iovcnt > DNSLENS_MAX_IOV)
		count(DNSLENS_CNT_IOV_SKIPPED);
#pragma unroll
	for (int i = 0; i < DNSLENS_MAX_IOV; i++) {
		if (i >= iovcnt || off >= len || off >= DNSLENS_MAX_PAYLOAD)
			break;
		struct iovec v = {};
		if (bpf_probe_read_user(&v, sizeof(v), iov + i))
			break;
		__u64 n = v.iov_len;
		if (n > len - off)
			n = len - off;
		if (n > DNSLENS_MAX_PAYLOAD - off)
			n = DNSLENS_MAX_PAYLOAD - off;
		__u32 at = off & (DNSLENS_MAX_PAYLOAD - 1);
		__u64 size = copy_bound(n);
		if (size && bpf_probe_read_user(ev->payload + at, size, v.iov_base))
			break;
		off += size;
	}
	ev->payload_len = off;
}

static __always_inline struct dnslens_source *source_of(const struct dnslens_event *ev)
{
	struct dnslens_source_key key = {
		.cgroup_id = ev->cgroup_id,
		.cgroup_v1_id = ev->cgroup_v1_id,
	};
	struct dnslens_source *src = bpf_map_lookup_elem(&sources, &key);
	if (src)
		return src;
	struct dnslens_source fresh = {.window_start_ns = ev->timestamp_ns};
	bpf_map_update_elem(&sources, &key, &fresh, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sources, &key);
}

/* Counts a dropped event against its cgroup, and names its process. */
static __always_inline void charge(struct dnslens_source *src, const struct dnslens_event *ev,
				   __u64 *reason)
{
	__sync_fetch_and_add(reason, 1);
	src->last_tgid = ev->tgid;
	__builtin_memcpy(src->last_comm, ev->leader_comm, sizeof(src->last_comm));
}

/* Whether an event of `size` bytes may go in: see DNSLENS_SHARE_DIVISOR. Counts a refusal. */
static __always_inline bool within_share(const struct dnslens_event *ev, __u64 size)
{
	__u64 ring = ring_size ? ring_size : bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	__u64 used = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (used < ring / 2)
		return true;
	struct dnslens_source *src = source_of(ev);
	if (!src)
		return true;
	if (used + size > ring - ring / DNSLENS_EXEC_RESERVE_DIVISOR) {
		charge(src, ev, &src->ringbuf_full);
		count(DNSLENS_CNT_RINGBUF_FULL);
		return false;
	}
	/* Races between CPUs here only blur the window's edge by a few events. */
	if (ev->timestamp_ns - src->window_start_ns >= DNSLENS_SHARE_WINDOW_NS) {
		src->window_start_ns = ev->timestamp_ns;
		src->window_bytes = 0;
	}
	if (src->window_bytes + size > ring / DNSLENS_SHARE_DIVISOR) {
		charge(src, ev, &src->over_share);
		count(DNSLENS_CNT_OVER_SHARE);
		return false;
	}
	__sync_fetch_and_add(&src->window_bytes, size);
	return true;
}

/* Whether a server-side message of this process went up less than DNSLENS_RESOLVER_RENEWAL_NS
 * ago, so that this one may stay in the kernel. */
static __always_inline bool served_recently(struct served_slot *slot, __u32 tgid, __u64 start_ns,
					    __u64 now)
{
	/* Races between CPUs only let a few more through. */
	return slot->tgid == tgid && slot->process_start_ns == start_ns &&
	       now - slot->passed_ns < DNSLENS_RESOLVER_RENEWAL_NS;
}

static __always_inline struct served_slot *served_slot_of(__u32 tgid)
{
	return &served_slots[tgid & (DNSLENS_SERVER_SLOTS - 1)];
}

/* Whether the message is a server's side of a UDP exchange (a query received, a response sent)
 * that no output shows and that need not go out: see DNSLENS_RESOLVER_RENEWAL_NS. */
static __always_inline bool stays_in_kernel(const struct dnslens_event *ev)
{
	/* Shorter than that has no role: userspace counts it as malformed. */
	if (server_side_events || ev->protocol != IPPROTO_UDP || ev->payload_len < 3)
		return false;
	bool response = ev->payload[2] & 0x80;
	if (response != (ev->direction == DNSLENS_DIR_SEND))
		return false;
	struct served_slot *slot = served_slot_of(ev->tgid);
	if (served_recently(slot, ev->tgid, ev->process_start_ns, ev->timestamp_ns))
		return true;
	slot->tgid = ev->tgid;
	slot->process_start_ns = ev->process_start_ns;
	slot->passed_ns = ev->timestamp_ns;
	return false;
}

static __always_inline void submit(struct dnslens_event *ev, __u64 msg_len)
{
	ev->msg_len = msg_len > 0xffffffff ? 0xffffffff : msg_len;
	if (ev->payload_len == 0 && msg_len > 0) {
		count(DNSLENS_CNT_READ_FAILED);
		return;
	}
	if (stays_in_kernel(ev)) {
		count(DNSLENS_CNT_SERVER_SIDE);
		return;
	}
	/* Once per call: the messages of one sendmmsg/recvmmsg share it. */
	if (!ev->cgroup_id)
		fill_cgroups(ev);
	if (msg_len > ev->payload_len)
		count(DNSLENS_CNT_TRUNCATED);
	__u64 size = copy_bound(ev->payload_len);
	__u64 bytes = offsetof(struct dnslens_event, payload) + size;
	if (!within_share(ev, bytes))
		return;
	if (bpf_ringbuf_output(&events, ev, bytes, 0)) {
		struct dnslens_source *src = source_of(ev);
		if (src)
			charge(src, ev, &src->ringbuf_full);
		count(DNSLENS_CNT_RINGBUF_FULL);
	} else {
		count(DNSLENS_CNT_EVENTS);
	}
}

/* Emits one message described by a user msghdr; `len` is what the syscall moved for it. The
 * peer comes from msg_name when `peer_from_name` (sends, and receives seen at syscall exit). */
static __always_inline void emit_msghdr(struct dnslens_event *ev, const struct user_msghdr *uhdr,
					__u64 len, __u8 index, bool peer_from_name, bool need_dns_peer,
					const struct sockaddr_inet *known_peer)
{
	struct user_msghdr hdr = {};
	if (bpf_probe_read_user(&hdr, sizeof(hdr), uhdr)) {
		count(DNSLENS_CNT_READ_FAILED);
		return;
	}
	ev->msg_index = index;
	if (peer_from_name && !(known_peer ? apply_peer(ev, known_peer, need_dns_peer)
					    : apply_user_peer(ev, hdr.msg_name, need_dns_peer)))
		return;
	copy_iov(ev, hdr.msg_iov, hdr.msg_iovlen, len);
	submit(ev, len);
}

/* After an unconnected send to a DNS port: the server it went to (now in the event). */
static __always_inline void remember_server(const struct dnslens_event *ev, __u64 sk)
{
	/* A socket mostly queries the same server: finding the entry unchanged is much cheaper
	 * than updating it (measured with bpf_stats: about 90 ns of each unconnected send). */
	struct dns_server *known = bpf_map_lookup_elem(&dns_sockets, &sk);
	if (known && known->port == ev->remote_port && same_addr(known->addr, ev->remote_addr))
		return;
	struct dns_server server = {.port = ev->remote_port};
	__builtin_memcpy(server.addr, ev->remote_addr, sizeof(server.addr));
	bpf_map_update_elem(&dns_sockets, &sk, &server, BPF_ANY);
}

/* Emits what one syscall moved. `ret` is its return value: bytes, or for the mmsg calls the
 * number of messages when `only` is -1 (syscall exit: every message is walked) and the bytes of
 * message `only` otherwise (socket hooks: one message per run). The peer is read from the
 * user's sockaddr when `peer_from_user`. */
static __always_inline void emit_call(struct dnslens_event *ev, const struct call *call, long ret,
				      bool peer_from_user, int only)
{
	/* A destination already read for the DNS port check is not read again. */
	const struct sockaddr_inet *known_peer = call->dest_known ? &call->dest : NULL;
	switch (call->kind) {
	case ARG_BUF:
		if (peer_from_user &&
		    !(known_peer ? apply_peer(ev, known_peer, call->need_dns_peer)
				 : apply_user_peer(ev, (const void *)call->addr, call->need_dns_peer)))
			return;
		copy_flat(ev, (const void *)call->data, ret);
		submit(ev, ret);
		break;
	case ARG_IOV:
		copy_iov(ev, (const struct iovec *)call->data, call->count, ret);
		submit(ev, ret);
		break;
	case ARG_MSGHDR:
		emit_msghdr(ev, (const struct user_msghdr *)call->data, ret, 0, peer_from_user,
			    call->need_dns_peer, known_peer);
		break;
	case ARG_MMSGHDR: {
		const struct mmsghdr *msgs = (const struct mmsghdr *)call->data;
		if (only >= 0) {
			if (only >= DNSLENS_MAX_MMSG) {
				count(DNSLENS_CNT_MMSG_SKIPPED);
				return;
			}
			emit_msghdr(ev, &msgs[only].msg_hdr, ret, only, peer_from_user, false, NULL);
			return;
		}
		if (ret > DNSLENS_MAX_MMSG) {
			count(DNSLENS_CNT_MMSG_SKIPPED);
			ret = DNSLENS_MAX_MMSG;
		}
#pragma unroll
		for (int i = 0; i < DNSLENS_MAX_MMSG; i++) {
			if (i >= ret)
				break;
			unsigned int msg_len = 0;
			if (bpf_probe_read_user(&msg_len, sizeof(msg_len), &msgs[i].msg_len))
				break;
			emit_msghdr(ev, &msgs[i].msg_hdr, msg_len, i, peer_from_user,
				    call->need_dns_peer, NULL);
		}
		break;
	}
	}
}

static __always_inline void set_call(struct call *call, __u8 syscall, __u8 kind, __u8 direction)
{
	call->syscall = syscall;
	call->kind = kind;
	call->direction = direction;
}

/* The syscall and its arguments from the saved registers (x86_64 ABI: nr in orig_ax, arguments
 * in di, si, dx, r10, r8). Other architectures need their own numbers and registers. */
static __always_inline bool decode_call(struct pt_regs *regs, struct call *call)
{
	switch (regs->orig_ax) {
	case 0:
		set_call(call, DNSLENS_SYS_READ, ARG_BUF, DNSLENS_DIR_RECV);
		break;
	case 1:
		set_call(call, DNSLENS_SYS_WRITE, ARG_BUF, DNSLENS_DIR_SEND);
		break;
	case 19:
		set_call(call, DNSLENS_SYS_READV, ARG_IOV, DNSLENS_DIR_RECV);
		break;
	case 20:
		set_call(call, DNSLENS_SYS_WRITEV, ARG_IOV, DNSLENS_DIR_SEND);
		break;
	case 44:
		set_call(call, DNSLENS_SYS_SENDTO, ARG_BUF, DNSLENS_DIR_SEND);
		call->addr = regs->r8;
		break;
	case 45:
		set_call(call, DNSLENS_SYS_RECVFROM, ARG_BUF, DNSLENS_DIR_RECV);
		call->addr = regs->r8;
		break;
	case 46:
		set_call(call, DNSLENS_SYS_SENDMSG, ARG_MSGHDR, DNSLENS_DIR_SEND);
		break;
	case 47:
		set_call(call, DNSLENS_SYS_RECVMSG, ARG_MSGHDR, DNSLENS_DIR_RECV);
		break;
	case 299:
		set_call(call, DNSLENS_SYS_RECVMMSG, ARG_MMSGHDR, DNSLENS_DIR_RECV);
		break;
	case 307:
		set_call(call, DNSLENS_SYS_SENDMMSG, ARG_MMSGHDR, DNSLENS_DIR_SEND);
		break;
	default:
		return false;
	}
	call->fd = regs->di;
	call->data = regs->si;
	call->count = regs->dx;
	return true;
}

static __always_inline int handle_exit(struct pt_regs *regs, long ret)
{
	struct call call = {};
	if (ret <= 0 || !decode_call(regs, &call))
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (!classify(task, &call))
		return 0;

	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 0;
	struct dnslens_event *ev = &s->event;
	fill_header(ev, task, &call, DNSLENS_RECORD_DNS, NULL, bpf_ktime_get_ns());

	if (call.need_dns_peer) {
		/* The sender's address is in the user's sockaddr, when the receive asked for it;
		 * otherwise the server this socket queried stands for it. */
		struct dns_server *server = bpf_map_lookup_elem(&dns_sockets, &call.sk);
		if (server) {
			__builtin_memcpy(ev->remote_addr, server->addr, sizeof(ev->remote_addr));
			ev->remote_port = server->port;
		}
	}
	emit_call(ev, &call, ret, true, -1);
	if (call.to_server)
		remember_server(ev, call.sk);
	return 0;
}

/* Preferred: the BTF raw tracepoint, which passes the registers and the return value. */
SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit_btf, struct pt_regs *regs, long ret)
{
	return handle_exit(regs, ret);
}

/* Fallback: attached by the loader to each hooked sys_exit_* syscall tracepoint. */
SEC("tracepoint")
int sys_exit_tracepoint(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return handle_exit(regs, ctx->ret);
}


#define MSG_PEEK 2

/* Set by mmsg_call_end the first time it runs: from then on every sendmmsg/recvmmsg call ends
 * by dropping its cursor, so a cursor found belongs to the call under way, however long that
 * call waits between two messages (a blocked TCP send, a preempted thread). */
__u32 mmsg_call_ends_seen = 0;

/* Which message of the current sendmmsg/recvmmsg call this is: the hooks below fire once per
 * message, in order, within one call. Until calls are seen to end, a cursor older than 10 ms
 * is taken for a past call's. */
static __always_inline __u32 mmsg_index(__u64 msgvec, __u64 vlen)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	struct mmsg_cursor *cursor = bpf_map_lookup_elem(&mmsg_cursors, &id);
	__u64 index = 0;
	if (cursor && cursor->msgvec == msgvec && cursor->next < vlen &&
	    (mmsg_call_ends_seen || now - cursor->time_ns < 10 * 1000 * 1000))
		index = cursor->next;
	struct mmsg_cursor next = {.msgvec = msgvec, .time_ns = now, .next = index + 1};
	bpf_map_update_elem(&mmsg_cursors, &id, &next, BPF_ANY);
	return index;
}

/* Socket mode, attached to syscalls/sys_exit_sendmmsg and sys_exit_recvmmsg: the call is over,
 * so is its cursor. Optional: without tracefs the 10 ms rule above stands. */
SEC("tracepoint")
int mmsg_call_end(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&mmsg_cursors, &id);
	mmsg_call_ends_seen = 1;
	return 0;
}

/* Takes a received datagram's sender. The address is as the socket reports it: IPv4 senders
 * of an IPv6 socket are already v4-mapped. */
static __always_inline void apply_datagram_peer(struct dnslens_event *ev,
						const struct datagram_peer *peer)
{
	ev->remote_port = peer->remote_port;
	__builtin_memcpy(ev->remote_addr, peer->remote_addr, 16);
}

/* Whether this send is the response net_dev_queue saw the socket send in this syscall. A note
 * is used once: any send of the task clears it. */
static __always_inline bool noted_reply(struct task_struct *task, struct sock *sk, long ret)
{
	__u32 zero = 0;
	struct server_reply *reply = bpf_map_lookup_elem(&server_replies, &zero);
	if (!reply || reply->pid_tgid != task_pid_tgid(task))
		return false;
	reply->pid_tgid = 0;
	return reply->sk == (__u64)sk && reply->len == ret;
}

/* Socket mode: one message that the socket layer just moved. The buffer is found through the
 * syscall's arguments in the task's saved registers. */
static __always_inline int on_sock_io(struct sock *sk, long ret, int flags, __u8 direction)
{
	__u32 ports = sk->__sk_common.skc_portpair;
	__u16 remote_port = bpf_ntohs((__u16)ports);
	__u16 local_port = ports >> 16;
	bool dns_port = is_dns_port(local_port) || is_dns_port(remote_port);
	/* Past here only unconnected UDP may still turn out to be DNS: a connected socket talks to
	 * its peer alone. */
	if (!dns_port && (remote_port != 0 || sk->sk_protocol != IPPROTO_UDP))
		return 0;

	struct task_struct *task = bpf_get_current_task_btf();
	struct datagram_peer peer = {};
	bool have_peer = false;
	__u64 now = 0;
	if (direction == DNSLENS_DIR_RECV && sk->sk_protocol == IPPROTO_UDP) {
		/* Taken even when the receive failed, so it cannot be mistaken for a later one's;
		 * the age and port checks cover a record whose receive never reached this hook. */
		__u32 zero = 0;
		struct datagram_peer *seen = bpf_map_lookup_elem(&datagram_peers, &zero);
		if (seen && seen->pid_tgid == task_pid_tgid(task)) {
			peer = *seen;
			now = bpf_ktime_get_ns();
			have_peer = now - peer.time_ns < 1000 * 1000 &&
				    peer.local_port == local_port;
			seen->pid_tgid = 0;
		}
	}
	/* Where no output shows a server's side, it is told without the user's buffer (each read
	 * of which is a helper call): on a socket with a DNS port of its own and no peer, a
	 * datagram received from a port that is not a DNS port is a query to this server, and a
	 * send is its response when net_dev_queue saw the packet's QR bit set. */
	bool server_side = false;
	if (!server_side_events && remote_port == 0 && is_dns_port(local_port) &&
	    sk->sk_protocol == IPPROTO_UDP)
		server_side = direction == DNSLENS_DIR_RECV
				      ? have_peer && !is_dns_port(peer.remote_port)
				      : noted_reply(task, sk, ret);
	/* Most receives that fail are a non-blocking socket found empty: they leave here. */
	if (ret <= 0 || (direction == DNSLENS_DIR_RECV && (flags & MSG_PEEK)))
		return 0;
	if (server_side) {
		__u32 tgid = task->tgid;
		if (!now)
			now = bpf_ktime_get_ns();
		if (served_recently(served_slot_of(tgid), tgid, task->group_leader->start_time,
				    now)) {
			count(DNSLENS_CNT_SERVER_SIDE);
			return 0;
		}
		/* Due to go up: the full path below also renews the process's slot. */
	}
	if (direction == DNSLENS_DIR_RECV && sk->sk_protocol == IPPROTO_UDP) {
		/* Unconnected UDP: only datagrams from or to a DNS port were recorded; a receive
		 * that did not ask for its sender counts when the socket queried a DNS server. */
		if (!dns_port && !have_peer) {
			struct dns_server *server = bpf_sk_storage_get(&socket_servers, sk, 0, 0);
			if (!server)
				return 0;
			__builtin_memcpy(peer.remote_addr, server->addr, sizeof(peer.remote_addr));
			peer.remote_port = server->port;
			have_peer = true;
		}
	}

	struct call call = {};
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!decode_call(regs, &call) || call.direction != direction) {
		if (dns_port || have_peer)
			count(DNSLENS_CNT_OTHER_PATH);
		return 0;
	}
	if (!dns_port && direction == DNSLENS_DIR_SEND) {
		if (!read_user_sockaddr(send_destination(&call), &call.dest) ||
		    (call.dest.family != AF_INET && call.dest.family != AF_INET6) ||
		    !is_dns_port(bpf_ntohs(call.dest.port)))
			return 0;
		call.dest_known = call.kind != ARG_MMSGHDR;
	}
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	__u16 protocol = sk->sk_protocol;
	if (protocol != IPPROTO_UDP && protocol != IPPROTO_TCP)
		return 0;
	call.sk = (__u64)sk;
	call.socket_ino = sk->sk_socket->file->f_inode->i_ino;

	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 0;
	struct dnslens_event *ev = &s->event;
	fill_header(ev, task, &call, DNSLENS_RECORD_DNS, sk, now ? now : bpf_ktime_get_ns());
	if (have_peer)
		apply_datagram_peer(ev, &peer);
	bool send = direction == DNSLENS_DIR_SEND;
	/* A receive's sockaddr is written to the user only after this hook: its peer came above. */
	int index = call.kind == ARG_MMSGHDR ? mmsg_index(call.data, call.count) : 0;
	emit_call(ev, &call, ret, send, index);
	if (send && !dns_port) {
		struct dns_server *server =
			bpf_sk_storage_get(&socket_servers, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		/* As in remember_server: written only when it changed. */
		if (server && (server->port != ev->remote_port ||
			       !same_addr(server->addr, ev->remote_addr))) {
			server->port = ev->remote_port;
			__builtin_memcpy(server->addr, ev->remote_addr, sizeof(server->addr));
		}
	}
	return 0;
}

/* Preferred (Linux 6.3+): the socket layer's own tracepoints fire only for socket I/O, so pipes
 * and files pay nothing, and other sockets pay a port check. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send_length, struct sock *sk, int ret, int flags)
{
	return on_sock_io(sk, ret, flags, DNSLENS_DIR_SEND);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv_length, struct sock *sk, int ret, int flags)
{
	return on_sock_io(sk, ret, flags, DNSLENS_DIR_RECV);
}

/* Records the sender of a UDP datagram that an unconnected socket receives, in the receiving
 * task, just before sock_recv_length fires for it: the kernel hands the address to these hooks
 * (to let them rewrite it) and writes it to the user only after sock_recv_length. They run only
 * for receives that ask for the sender. They never change anything: always return 1 (allow). */
static __always_inline void record_datagram_peer(struct bpf_sock_addr *ctx, __u16 family)
{
	struct datagram_peer peer = {.family = family};
	peer.remote_port = bpf_ntohs((__u16)ctx->user_port);
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return;
	peer.local_port = sk->src_port;
	if (!is_dns_port(peer.remote_port) && !is_dns_port(peer.local_port))
		return;
	if (family == AF_INET) {
		__u32 ip4 = ctx->user_ip4;
		__builtin_memcpy(peer.remote_addr, &ip4, 4);
	} else {
		__u32 ip6[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
		__builtin_memcpy(peer.remote_addr, ip6, 16);
	}
	peer.time_ns = bpf_ktime_get_ns();
	peer.pid_tgid = task_pid_tgid(bpf_get_current_task_btf());
	/* Written in place: an update would also run the map's field cleanup. */
	__u32 zero = 0;
	struct datagram_peer *slot = bpf_map_lookup_elem(&datagram_peers, &zero);
	if (slot)
		*slot = peer;
}

SEC("cgroup/recvmsg4")
int recvmsg4(struct bpf_sock_addr *ctx)
{
	record_datagram_peer(ctx, AF_INET);
	return 1;
}

SEC("cgroup/recvmsg6")
int recvmsg6(struct bpf_sock_addr *ctx)
{
	record_datagram_peer(ctx, AF_INET6);
	return 1;
}

/* For noted_reply: a response leaving a server's socket, in the sending task. */
static __always_inline void note_reply(struct sock *sk, __u64 len)
{
	__u32 zero = 0;
	struct server_reply *reply = bpf_map_lookup_elem(&server_replies, &zero);
	if (!reply)
		return;
	reply->pid_tgid = task_pid_tgid(bpf_get_current_task_btf());
	reply->sk = (__u64)sk;
	reply->len = len;
}

/* Remembers the source address of outgoing DNS datagrams from wildcard-bound UDP sockets; runs
 * in the sender's context inside its send syscall, before the exit hook reads it; and, where
 * no output shows the server side, notes a server's responses (note_reply). Optional: without
 * it such sockets show the wildcard address and a server's responses are told by their bytes in
 * the user's buffer. Other packets leave after a few loads. */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(net_dev_queue, struct sk_buff *skb)
{
	struct sock *sk = skb->sk;
	if (!sk || sk->sk_protocol != IPPROTO_UDP)
		return 0;
	void *network = skb->head + skb->network_header;
	void *transport = skb->head + skb->transport_header;
	if (!server_side_events && is_dns_port(sk->__sk_common.skc_num)) {
		/* A server's socket: the UDP header and the DNS flags byte, for sock_send_length. */
		struct {
			__be16 sport;
			__be16 dport;
			__be16 len;
			__be16 check;
			__u8 id[2];
			__u8 flags;
		} head = {};
		if (bpf_probe_read_kernel(&head, sizeof(head), transport))
			return 0;
		if (!is_dns_port(bpf_ntohs(head.dport))) {
			/* Only a response to a client's port leaves its socket's events here. */
			if (head.flags & 0x80)
				note_reply(sk, bpf_ntohs(head.len) - 8);
			return 0;
		}
		/* A query from a DNS port: the source address below, as for any query. */
	}
	__u16 family = sk->__sk_common.skc_family;
	struct local_addr src = {.family = family};
	__u16 dport = 0;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (sk->__sk_common.skc_rcv_saddr != 0)
			return 0;
		__be32 saddr = 0;
		bpf_probe_read_kernel(&saddr, sizeof(saddr), network + 12);
		if (family == AF_INET6) {
			/* An IPv6 socket sending IPv4: keep the source v4-mapped, as the events do. */
			src.addr[10] = 0xff;
			src.addr[11] = 0xff;
			__builtin_memcpy(&src.addr[12], &saddr, 4);
		} else {
			__builtin_memcpy(src.addr, &saddr, 4);
		}
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6) && family == AF_INET6) {
		struct in6_addr bound = sk->__sk_common.skc_v6_rcv_saddr;
		if (!is_wildcard(bound.in6_u.u6_addr8))
			return 0;
		bpf_probe_read_kernel(src.addr, sizeof(src.addr), network + 8);
	} else {
		return 0;
	}
	bpf_probe_read_kernel(&dport, sizeof(dport), transport + 2);
	if (!is_dns_port(bpf_ntohs(dport)))
		return 0;
	__u64 key = (__u64)sk;
	/* As in remember_server: most packets find their socket's source already recorded. */
	struct local_addr *known = bpf_map_lookup_elem(&udp_sources, &key);
	if (known && known->family == src.family && same_addr(known->addr, src.addr))
		return 0;
	bpf_map_update_elem(&udp_sources, &key, &src, BPF_ANY);
	return 0;
}

/* sched_process_exec's format: the file name is a __data_loc (offset in the low 16 bits). */
struct sched_process_exec_args {
	struct trace_entry ent;
	__u32 filename_loc;
	int pid;
	int old_pid;
};

SEC("tracepoint/sched/sched_process_exec")
int sched_process_exec(struct sched_process_exec_args *ctx)
{
	struct dnslens_exec_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		count(DNSLENS_CNT_EXEC_LOST);
		return 0;
	}
	struct task_struct *task = (void *)bpf_get_current_task();
	ev->kind = DNSLENS_RECORD_EXEC;
	ev->tgid = bpf_get_current_pid_tgid() >> 32;
	ev->process_start_ns = BPF_CORE_READ(task, group_leader, start_time);
	bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename),
				  (void *)ctx + (ctx->filename_loc & 0xffff));
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

static __always_inline bool is_loopback_v4(__be32 addr)
{
	return (bpf_ntohl(addr) >> 24) == 127;
}

/* 127.0.0.0/8, ::1, and ::ffff:127.0.0.0/104 (an IPv6 socket connecting to IPv4 loopback). */
static __always_inline bool is_loopback_v6(const struct in6_addr *addr)
{
	const __u32 *w = addr->in6_u.u6_addr32;
	if (w[0] != 0 || w[1] != 0)
		return false;
	if (w[2] == 0)
		return w[3] == bpf_htonl(1);
	return w[2] == bpf_htonl(0xffff) && is_loopback_v4(w[3]);
}

static __always_inline bool is_v4_mapped(const __u8 addr[16])
{
	const __u32 *w = (const __u32 *)addr;
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

/* Outgoing TCP connections, for the connect detectors. tcp_v4_connect/tcp_v6_connect move the
 * socket from CLOSE to SYN_SENT inside connect(), in the connecting task, after the destination
 * and the source address are set but before an unbound socket's source port is chosen (so that
 * port reads 0). inet_sock_set_state exists since Linux 4.16; as tp_btf it needs BTF (5.5+).
 * Every port is reported; loopback destinations are not (local traffic, and the most frequent).
 * Optional: without it there are no connect records. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, const struct sock *sk, int oldstate, int newstate)
{
	if (oldstate != TCP_CLOSE || newstate != TCP_SYN_SENT || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family == AF_INET) {
		if (is_loopback_v4(sk->__sk_common.skc_daddr))
			return 0;
	} else if (family == AF_INET6) {
		struct in6_addr daddr = sk->__sk_common.skc_v6_daddr;
		if (is_loopback_v6(&daddr))
			return 0;
	} else {
		return 0;
	}
	struct call call = {
		.sk = (__u64)sk,
		.socket_ino = sk->sk_socket->file->f_inode->i_ino,
		.syscall = DNSLENS_SYS_CONNECT,
		.direction = DNSLENS_DIR_SEND,
	};
	/* The DNS hooks' scratch: this never runs nested in them, both run only in task context. */
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 0;
	struct dnslens_event *ev = &s->event;
	fill_header(ev, bpf_get_current_task_btf(), &call, DNSLENS_RECORD_CONNECT,
		    (struct sock *)sk, bpf_ktime_get_ns());
	if (family == AF_INET6 && is_wildcard(ev->local_addr) && is_v4_mapped(ev->remote_addr)) {
		/* An IPv6 socket connecting to IPv4: tcp_v4_connect has set the IPv4 source, the
		 * v4-mapped copy is made only after it returns. */
		ev->local_addr[10] = 0xff;
		ev->local_addr[11] = 0xff;
		__be32 saddr = sk->__sk_common.skc_rcv_saddr;
		__builtin_memcpy(&ev->local_addr[12], &saddr, 4);
	}
	ev->payload_len = 0;
	submit(ev, 0);
	return 0;
}

/* Resolver calls in libc (uprobes, attached by userspace to each libc a resolving process maps):
 * the entry keeps the arguments per thread, the return emits one record with the name the
 * application passed, its result and both times. Everything here is the workload's: the name
 * is a user pointer read with a bound, and the records pass the same fair share as DNS events.
 * Optional: without uprobes lookups come from the wire alone. */
struct libc_entry {
	__u64 name;               /* const char * as passed */
	__u64 result;             /* _r: struct hostent ** set on success */
	__u64 h_errnop;           /* _r: int * set on failure */
	__u64 entry_ns;
	__u8 function;            /* enum dnslens_libc_function */
};

/* Calls in flight, by thread; bounded, so threads that never return (killed in the call) are
 * forgotten oldest first. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct libc_entry);
} libc_calls SEC(".maps");

static __always_inline int libc_enter(__u8 function, __u64 name, __u64 result, __u64 h_errnop)
{
	/* getaddrinfo(NULL, service): a local address, no lookup. */
	if (!name)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct libc_entry entry = {
		.name = name,
		.result = result,
		.h_errnop = h_errnop,
		.entry_ns = bpf_ktime_get_ns(),
		.function = function,
	};
	bpf_map_update_elem(&libc_calls, &id, &entry, BPF_ANY);
	return 0;
}

/* The call's status as struct dnslens_libc_call defines it. */
static __always_inline __s32 libc_status(const struct libc_entry *entry, long ret)
{
	if (entry->function == DNSLENS_LIBC_GETADDRINFO)
		return ret;
	__u64 result = 0;
	if (!bpf_probe_read_user(&result, sizeof(result), (void *)entry->result) && result)
		return 0;
	__s32 h_errno = -1;
	if (bpf_probe_read_user(&h_errno, sizeof(h_errno), (void *)entry->h_errnop))
		return -1;
	return h_errno;
}

static __always_inline int libc_return(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct libc_entry *found = bpf_map_lookup_elem(&libc_calls, &id);
	if (!found)
		return 0;
	struct libc_entry entry = *found;
	bpf_map_delete_elem(&libc_calls, &id);
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 0;
	struct dnslens_event *ev = &s->event;
	/* No socket: those fields are 0. */
	__builtin_memset(ev, 0, offsetof(struct dnslens_event, comm));
	fill_task(ev, bpf_get_current_task_btf(), DNSLENS_RECORD_LIBC, bpf_ktime_get_ns());
	struct dnslens_libc_call *call = (struct dnslens_libc_call *)ev->payload;
	call->entry_ns = entry.entry_ns;
	call->status = libc_status(&entry, ret);
	call->function = entry.function;
	if (bpf_probe_read_user_str(call->name, sizeof(call->name), (void *)entry.name) < 0)
		call->name[0] = 0;
	ev->payload_len = sizeof(*call);
	submit(ev, sizeof(*call));
	return 0;
}

/* int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
 *                 struct addrinfo **res) */
SEC("uprobe")
int getaddrinfo_enter(struct pt_regs *ctx)
{
	return libc_enter(DNSLENS_LIBC_GETADDRINFO, ctx->di, 0, 0);
}

/* int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
 *                     struct hostent **result, int *h_errnop) */
SEC("uprobe")
int gethostbyname_r_enter(struct pt_regs *ctx)
{
	return libc_enter(DNSLENS_LIBC_GETHOSTBYNAME_R, ctx->di, ctx->r8, ctx->r9);
}

/* int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf,
 *                      size_t buflen, struct hostent **result, int *h_errnop): the seventh
 * argument is on the stack, above the return address. */
SEC("uprobe")
int gethostbyname2_r_enter(struct pt_regs *ctx)
{
	__u64 h_errnop = 0;
	bpf_probe_read_user(&h_errnop, sizeof(h_errnop), (void *)(ctx->sp + 8));
	return libc_enter(DNSLENS_LIBC_GETHOSTBYNAME2_R, ctx->di, ctx->r9, h_errnop);
}

/* One return hook serves the three functions: the entry says which it was. */
SEC("uretprobe")
int libc_resolver_return(struct pt_regs *ctx)
{
	return libc_return(ctx->ax);
}
