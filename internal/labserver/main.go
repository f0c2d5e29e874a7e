// Command labserver is a TCP server whose way of ending connections is
// chosen by a flag, for synprobe's lab demo and close-behaviour tests.
//
//	labserver -listen 198.18.0.2:80 -listen '[2001:db8::2]:80' -mode rst
//
// It prints "ready" on stdout once every listener is up and exits on SIGINT
// or SIGTERM, closing listeners and connections.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const banner = "220 labserver\r\n"

const modesHelp = `modes, after accepting a connection:
  hold              read until EOF, then close (default)
  close-delay=DUR   read until EOF, wait DUR (e.g. 200ms), then close
  speak-first       write a banner, then close
  rst               close at once with SO_LINGER 0 (sends RST)
  half-close=N      read until EOF, write N bytes, then close
  never             read until EOF, keep the connection open until exit
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var usage usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "labserver:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "labserver:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

type listenFlag []string

func (l *listenFlag) String() string     { return strings.Join(*l, ",") }
func (l *listenFlag) Set(s string) error { *l = append(*l, s); return nil }

// mode is a parsed -mode value.
type mode struct {
	name  string
	delay time.Duration // close-delay
	n     int           // half-close
}

func parseMode(s string) (mode, error) {
	name, arg, hasArg := strings.Cut(s, "=")
	m := mode{name: name}
	var err error
	switch {
	case (name == "hold" || name == "speak-first" || name == "rst" || name == "never") && !hasArg:
	case name == "close-delay" && hasArg:
		m.delay, err = time.ParseDuration(arg)
		if err == nil && m.delay < 0 {
			err = errors.New("negative")
		}
	case name == "half-close" && hasArg:
		m.n, err = strconv.Atoi(arg)
		if err == nil && m.n < 0 {
			err = errors.New("negative")
		}
	default:
		return mode{}, fmt.Errorf("unknown mode %q", s)
	}
	if err != nil {
		return mode{}, fmt.Errorf("mode %q: %v", s, err)
	}
	return m, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("labserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var listen listenFlag
	fs.Var(&listen, "listen", "`ADDR:PORT` to listen on (repeatable)")
	modeFlag := fs.String("mode", "hold", "how to end connections, see below")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: labserver -listen ADDR:PORT... [-mode MODE]\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\n%s\nexample:\n  labserver -listen 198.18.0.2:80 -listen '[2001:db8::2]:80' -mode close-delay=500ms\n", modesHelp)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if len(listen) == 0 {
		return usageError{errors.New("no -listen address")}
	}
	m, err := parseMode(*modeFlag)
	if err != nil {
		return usageError{err}
	}

	var lns []net.Listener
	for _, addr := range listen {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return err
		}
		lns = append(lns, ln)
	}
	fmt.Fprintln(stdout, "ready")
	serve(ctx, lns, m)
	return nil
}

// serve handles connections on lns until ctx ends, then closes listeners
// and connections and waits for the handlers.
func serve(ctx context.Context, lns []net.Listener, m mode) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	for _, ln := range lns {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return // closed at shutdown
				}
				mu.Lock()
				conns[c] = struct{}{}
				mu.Unlock()
				wg.Go(func() {
					m.handle(ctx, c)
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				})
			}
		})
	}
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	mu.Lock()
	for c := range conns {
		c.Close() // wakes handlers blocked in Read
	}
	mu.Unlock()
	wg.Wait()
}

// handle runs one connection to the end the mode prescribes.
func (m mode) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	switch m.name {
	case "speak-first":
		_, _ = io.WriteString(c, banner)
		return
	case "rst":
		_ = c.(*net.TCPConn).SetLinger(0)
		return
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return // reset by the peer, or shut down
	}
	switch m.name {
	case "close-delay":
		select {
		case <-time.After(m.delay):
		case <-ctx.Done():
		}
	case "half-close":
		_, _ = c.Write(make([]byte, m.n))
	case "never":
		<-ctx.Done()
	}
}
