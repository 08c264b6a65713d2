/* Load generators for bench/load.sh, each reporting on stdout as "key value" lines.
 *
 *   dnsload gai THREADS SECONDS            getaddrinfo(AF_UNSPEC) of distinct names under
 *                                          bench.test from THREADS threads: glibc sends A and
 *                                          AAAA with sendmmsg on a connected socket.
 *   dnsload conn SERVER THREADS SECONDS    one connected UDP socket per thread, write()/read()
 *                                          on even threads and send()/recv() on odd ones, one
 *                                          query in flight per socket (Go's and c-ares' way).
 *   dnsload gen N                          N lines "<random>.wt.bench.test A" for dnsperf -d:
 *                                          the water-torture flood, every name distinct.
 *   dnsload blast SERVER N RATE            N queries for distinct random names sent with
 *                                          sendto at RATE per second to SERVER, where nothing
 *                                          answers: water torture against a dead upstream.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double seconds;
static const char *server;
static atomic_ulong ok, failed, sent, received;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *gai_thread(void *arg)
{
	long id = (long)arg;
	double end = now() + seconds;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
	char name[128];
	for (unsigned long i = 0; now() < end; i++) {
		struct addrinfo *res = NULL;
		snprintf(name, sizeof name, "g%ld-%lu.bench.test", id, i);
		if (getaddrinfo(name, NULL, &hints, &res) == 0) {
			ok++;
			freeaddrinfo(res);
		} else {
			failed++;
		}
	}
	return NULL;
}

/* A query for "c<id>-<n>.bench.test" type A with DNS id n. */
static size_t build_query(unsigned char *q, long id, unsigned n)
{
	char label[64];
	size_t len = 12;
	memset(q, 0, 12);
	q[0] = n >> 8;
	q[1] = n;
	q[2] = 0x01; /* RD */
	q[5] = 1;    /* QDCOUNT */
	int l = snprintf(label, sizeof label, "c%ld-%u", id, n);
	q[len++] = l;
	memcpy(q + len, label, l);
	len += l;
	memcpy(q + len, "\x05" "bench\x04" "test\0\0\x01\0\x01", 16);
	return len + 16;
}

static void *conn_thread(void *arg)
{
	long id = (long)arg;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53)};
	struct timeval tv = {.tv_sec = 1};
	inet_pton(AF_INET, server, &sa.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		perror("connect");
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	double end = now() + seconds;
	unsigned char q[128], r[1500];
	for (unsigned n = 0; now() < end; n++) {
		size_t len = build_query(q, id, n & 0xffff);
		ssize_t w = id % 2 ? send(fd, q, len, 0) : write(fd, q, len);
		if (w != (ssize_t)len) {
			failed++;
			continue;
		}
		sent++;
		ssize_t got = id % 2 ? recv(fd, r, sizeof r, 0) : read(fd, r, sizeof r);
		if (got >= 12)
			received++;
		else
			failed++;
	}
	close(fd);
	return NULL;
}

static int blast(const char *to, unsigned long n, double rate)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53)};
	if (fd < 0 || inet_pton(AF_INET, to, &sa.sin_addr) != 1 || rate <= 0) {
		perror("blast");
		return 2;
	}
	uint64_t x = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull | 1;
	unsigned char q[128];
	double start = now();
	for (unsigned long i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		char label[40];
		int l = snprintf(label, sizeof label, "%012llx%07lx", (unsigned long long)(x >> 16), i);
		memset(q, 0, 12);
		q[0] = i >> 8, q[1] = i, q[2] = 0x01, q[5] = 1;
		q[12] = l;
		memcpy(q + 13, label, l);
		memcpy(q + 13 + l, "\x02" "wt\x05" "bench\x04" "test\0\0\x01\0\x01", 19);
		if (sendto(fd, q, 13 + l + 19, 0, (struct sockaddr *)&sa, sizeof sa) > 0)
			sent++;
		else
			failed++;
		/* paced per 1,000 so that the rate holds without a syscall per query */
		if (i % 1000 == 999) {
			double ahead = start + (i + 1) / rate - now();
			if (ahead > 0)
				usleep(ahead * 1e6);
		}
	}
	printf("sent %lu\nfailed %lu\nseconds %.3f\n", (unsigned long)sent, (unsigned long)failed,
	       now() - start);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "gen")) {
		unsigned long n = strtoul(argv[2], NULL, 10);
		uint64_t x = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull | 1;
		for (unsigned long i = 0; i < n; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			/* the counter makes every name distinct; the random part defeats any cache */
			printf("%012llx%07lx.wt.bench.test A\n", (unsigned long long)(x >> 16), i);
		}
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "blast"))
		return blast(argv[2], strtoul(argv[3], NULL, 10), atof(argv[4]));
	int gai = argc == 4 && !strcmp(argv[1], "gai");
	int conn = argc == 5 && !strcmp(argv[1], "conn");
	if (!gai && !conn) {
		fprintf(stderr, "usage: dnsload gai THREADS SECONDS | conn SERVER THREADS SECONDS | gen N"
				" | blast SERVER N RATE\n");
		return 2;
	}
	if (conn)
		server = argv[2];
	long threads = atol(argv[gai ? 2 : 3]);
	seconds = atof(argv[gai ? 3 : 4]);
	pthread_t t[256];
	if (threads < 1 || threads > 256)
		return 2;
	double start = now();
	for (long i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, gai ? gai_thread : conn_thread, (void *)i);
	for (long i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	double took = now() - start;
	if (gai)
		printf("lookups %lu\nfailed %lu\nseconds %.2f\n", (unsigned long)ok,
		       (unsigned long)failed, took);
	else
		printf("sent %lu\nreceived %lu\nfailed %lu\nseconds %.2f\n", (unsigned long)sent,
		       (unsigned long)received, (unsigned long)failed, took);
	return 0;
}
