// Command goresolve resolves names with Go's own resolver (PreferGo), for dnslens's end-to-end
// tests. Built with CGO_ENABLED=0 it never calls libc: it reads /etc/resolv.conf itself and talks
// to the server over connected UDP sockets with write() and read(), retrying over TCP when an
// answer is truncated.
//
// Usage: goresolve [TYPE:]NAME...   TYPE is host (A and AAAA, the default), txt or srv.
// Prints one line per answer; exits 2 if a lookup failed.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	r := &net.Resolver{PreferGo: true}
	status := 0
	for _, arg := range os.Args[1:] {
		kind, name := "host", arg
		if i := strings.Index(arg, ":"); i >= 0 {
			kind, name = arg[:i], arg[i+1:]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var answers []string
		var err error
		switch kind {
		case "host":
			answers, err = r.LookupHost(ctx, name)
		case "txt":
			answers, err = r.LookupTXT(ctx, name)
		case "srv":
			var srvs []*net.SRV
			_, srvs, err = r.LookupSRV(ctx, "", "", name)
			for _, s := range srvs {
				answers = append(answers, fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, s.Target))
			}
		default:
			err = fmt.Errorf("unknown lookup type %q", kind)
		}
		cancel()
		if err != nil {
			fmt.Printf("%s error %v\n", arg, err)
			status = 2
			continue
		}
		for _, a := range answers {
			fmt.Printf("%s %s\n", arg, a)
		}
	}
	os.Exit(status)
}
