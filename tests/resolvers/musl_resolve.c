/*
 * A resolver client linked statically against musl, for dnslens's end-to-end tests. musl's
 * stub resolver sends its queries with sendto() and reads answers with recvfrom(), and asks for
 * A and AAAA in parallel on one socket: a pattern glibc does not produce.
 *
 * Usage: musl_resolve NAME...   resolves each NAME with getaddrinfo(AF_UNSPEC) and prints one
 * line per address; exits 2 if a name did not resolve.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
	int status = 0;

	for (int i = 1; i < argc; i++) {
		struct addrinfo hints, *res, *ai;
		char buf[INET6_ADDRSTRLEN];
		int err;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_DGRAM;
		err = getaddrinfo(argv[i], NULL, &hints, &res);
		if (err != 0) {
			printf("%s error %s\n", argv[i], gai_strerror(err));
			status = 2;
			continue;
		}
		for (ai = res; ai != NULL; ai = ai->ai_next) {
			const void *addr = ai->ai_family == AF_INET
				? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
				: (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
			inet_ntop(ai->ai_family, addr, buf, sizeof(buf));
			printf("%s %s\n", argv[i], buf);
		}
		freeaddrinfo(res);
	}
	return status;
}
