// Command synprobe measures TCP handshakes on the wire: it sends crafted SYN
// segments from raw sockets, times the SYN -> SYN-ACK round trip with kernel
// timestamps and reports each port as open, closed or filtered.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, &system{}))
}
