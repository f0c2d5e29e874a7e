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
	if len(os.Args) > 1 && os.Args[1] == "completion" {
		os.Exit(completionMain(os.Args[2:], os.Stdout, os.Stderr)) // completion.go
	}
	if len(os.Args) > 1 && os.Args[1] == "man" {
		os.Exit(manMain(os.Args[2:], os.Stdout, os.Stderr)) // manpage.go
	}
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(serveMain(os.Args[2:], os.Stderr)) // execs synprobe-serve (serve.go)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Every way out is an interrupt: the run resets the connections it
	// holds, removes its firewall table and prints its summary. SIGPIPE
	// too: caught, a write to a closed stdout fails with EPIPE (which
	// also ends the run) instead of killing synprobe on the spot.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		<-sigs
		cancel()
		signal.Reset(os.Interrupt) // a second Ctrl-C kills at once
	}()
	if len(os.Args) > 1 && os.Args[1] == "listener" {
		os.Exit(listenerMain(ctx, os.Args[2:], os.Stdout, os.Stderr)) // listener.go
	}
	if len(os.Args) > 1 && os.Args[1] == "trace" {
		os.Exit(traceMain(ctx, os.Args[2:], os.Stdout, os.Stderr)) // trace.go
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, &system{}))
}
