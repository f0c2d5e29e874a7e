package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"github.com/spf13/pflag"

	"github.com/synprobe/synprobe/internal/cli"
	"github.com/synprobe/synprobe/internal/exporter"
	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/rawsock"
)

// synprobe serve: a Prometheus exporter (docs/serve.md). SIGHUP reloads
// the configuration.

// defaultListen is --web.listen-address's default.
const defaultListen = ":9516"

type serveOptions struct {
	configFile    string
	listen        string
	webConfig     string
	timeoutOffset time.Duration
	iface         string
	ports         int
	user          string
	keepRoot      bool
	logLevel      string
	help          bool
}

func newServeFlagSet(o *serveOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("synprobe serve", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&o.configFile, "config.file", "", "the configuration: modules and targets (YAML, docs/serve.md); required")
	fs.StringVar(&o.listen, "web.listen-address", defaultListen, "the address to serve /probe and /metrics on")
	fs.StringVar(&o.webConfig, "web.config.file", "", "TLS and basic authentication (exporter-toolkit's web configuration file)")
	fs.DurationVar(&o.timeoutOffset, "timeout-offset", 500*time.Millisecond, "taken off the scrape timeout a /probe request may use")
	fs.StringVarP(&o.iface, "interface", "I", "", "send from this network device only")
	fs.IntVar(&o.ports, "ports", probe.DefaultPorts, "source ports held: at most this many probes in flight")
	fs.StringVarP(&o.user, "user", "Z", "", "the account a root run becomes after set-up (default: SUDO_UID's, else nobody)")
	fs.BoolVar(&o.keepRoot, "keep-root", false, "a root run stays uid 0 after set-up (its capabilities still go)")
	fs.StringVar(&o.logLevel, "log.level", "info", "debug, info, warn or error")
	fs.BoolVarP(&o.help, "help", "h", false, "this help")
	return fs
}

const serveUsageHead = `Usage: synprobe serve --config.file FILE [flags]

A Prometheus exporter: /probe?target=HOST:PORT&module=NAME answers one
probe blackbox_exporter-style; the configuration's targets are probed in the
background and /metrics serves their counters and RTT histograms; SIGHUP or
POST /-/reload reads the configuration again (docs/serve.md).

Flags:
`

const serveUsageTail = `
Exit status: 0 stopped by SIGTERM or SIGINT; 2 bad input (a flag, the
configuration); 3 runtime failure (privileges, the listen address taken).

Examples:
  sudo synprobe serve --config.file /etc/synprobe/serve.yml
  synprobe serve --config.file serve.yml --web.listen-address 127.0.0.1:9516
  synprobe serve --config.file serve.yml --web.config.file web.yml   TLS, auth
  curl 'localhost:9516/probe?target=198.18.0.2:443&module=rst'
`

// parseServeArgs parses serve's flags; errors are usageErrors.
func parseServeArgs(args []string) (*serveOptions, error) {
	o := new(serveOptions)
	fs := newServeFlagSet(o)
	help, err := cli.Parse(fs, args)
	if err != nil {
		return nil, err
	}
	o.help = o.help || help
	if o.help {
		return o, nil
	}
	switch {
	case fs.NArg() > 0:
		return nil, cli.Usagef("serve takes no targets on the command line: list them in --config.file")
	case o.configFile == "":
		return nil, cli.Usagef("--config.file is required: the modules and targets to serve (docs/serve.md)")
	case o.listen == "":
		return nil, cli.Usagef("--web.listen-address: an address such as :9516 or 127.0.0.1:9516")
	case o.timeoutOffset < 0 || o.timeoutOffset > time.Minute:
		return nil, cli.Usagef("--timeout-offset %v: from 0s to 1m", o.timeoutOffset)
	case o.ports < 1 || o.ports > 32768:
		return nil, cli.Usagef("--ports %d: from 1 to 32768", o.ports)
	case o.user != "" && o.keepRoot:
		return nil, cli.Usagef("-Z and --keep-root exclude each other")
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return nil, cli.Usagef("--web.listen-address %s: want [host]:port", o.listen)
	}
	if o.parseLevel() == nil {
		return nil, cli.Usagef("--log.level %s: debug, info, warn or error", o.logLevel)
	}
	return o, nil
}

func (o *serveOptions) parseLevel() *slog.Level {
	var l slog.Level
	if l.UnmarshalText([]byte(o.logLevel)) != nil || strings.ContainsAny(o.logLevel, "+-") {
		return nil
	}
	return &l
}

// quoted is what YAML libraries quote of a file in their errors.
// Compiled when first needed, not at every run's init.
var quoted = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("`[^`]*`|\"[^\"]*\"") })

// listenWeb opens --web.listen-address; its errors say what is wrong and
// the fix.
func listenWeb(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	_, port, _ := net.SplitHostPort(addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("--web.listen-address %s: the address is taken: another program listens on it (ss -ltnp 'sport = :%s' shows which): give another address, or stop that program", addr, port)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("--web.listen-address %s: not an address of this host: give one of its addresses (ip addr lists them), or :%s for all", addr, port)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("--web.listen-address %s: a port below 1024 needs CAP_NET_BIND_SERVICE: give a port from 1024 up (serve's is 9516)", addr)
	}
	return nil, fmt.Errorf("--web.listen-address %s: %w", addr, errors.Unwrap(err))
}

// serveMain runs `synprobe serve` with the process's signals: SIGTERM and
// SIGINT end it, SIGHUP reloads the configuration.
func serveMain(args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	reload := make(chan struct{}, 1)
	go func() {
		for s := range sigs {
			switch s {
			case syscall.SIGHUP:
				select {
				case reload <- struct{}{}:
				default:
				}
			case syscall.SIGPIPE: // a closed stderr: nothing to do
			default:
				cancel()
				signal.Reset(os.Interrupt, syscall.SIGTERM) // a second one ends at once
			}
		}
	}()
	return runServe(ctx, args, stdout, stderr, host{}, reload)
}

// runServe is serve's body: set-up, privileges dropped, then serving
// until ctx ends. reload asks for the configuration to be read again.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer, sys system, reload <-chan struct{}) int {
	o, err := parseServeArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "synprobe serve: %v\n", err)
		return cli.ExitUsage
	}
	if o.help {
		fmt.Fprint(stdout, serveUsageHead)
		fmt.Fprint(stdout, newServeFlagSet(new(serveOptions)).FlagUsagesWrapped(cli.HelpColumns))
		fmt.Fprint(stdout, serveUsageTail)
		return cli.ExitOK
	}
	code, err := serve(ctx, o, stderr, sys, reload)
	if err != nil {
		fmt.Fprintf(stderr, "synprobe serve: %v\n", err)
		var u *cli.UsageError
		if errors.As(err, &u) {
			return cli.ExitUsage
		}
		return cli.ExitFailure
	}
	return code
}

func serve(ctx context.Context, o *serveOptions, stderr io.Writer, sys system, reload <-chan struct{}) (int, error) {
	cfg, err := exporter.Load(o.configFile)
	if err == nil {
		if b, berr := rawsock.LocalBroadcasts(); berr == nil {
			err = cfg.CheckBroadcasts(b)
		}
	}
	if err != nil {
		return 0, cli.Usagef("%v", err)
	}
	if err := checkSources(o.configFile, cfg); err != nil {
		return 0, err
	}
	if o.webConfig != "" {
		if err := web.Validate(o.webConfig); err != nil {
			// Its errors quote the file, which holds password hashes,
			// and speak YAML and Go: the problem, in the file's terms.
			problem, _ := webConfigProblem(o.webConfig, err)
			return 0, cli.Usagef("--web.config.file %s: %s", o.webConfig, problem)
		}
	}
	if o.iface != "" {
		if _, err := net.InterfaceByName(o.iface); err != nil {
			return 0, cli.Usagef("-I %s: no such interface (ip link lists them)", o.iface)
		}
	}
	drop, err := cli.PlanCaller(sys.realUID(), o.user, o.keepRoot, sys.getenv, cli.LookupAccount)
	if err != nil {
		return 0, err
	}
	level := o.parseLevel()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	// Set-up: everything that needs a privilege. The RST guard is made
	// now, whatever the modules, so that a reload may bring ack and fin
	// modules after the capabilities are gone.
	// Spin -1: the engine sleeps between its events rather than poll
	// after each send (RTTs are kernel-stamped either way): at 10,000
	// probes a second the polls were 80,000 system calls a second and
	// some 5% of a core (docs/serve.md).
	client, err := probe.NewClient(&probe.ClientConfig{Guard: true, Interface: o.iface, Ports: o.ports, Spin: -1})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return 0, errors.New(cli.PrivilegeFix("raw sockets need CAP_NET_RAW, the RST guard CAP_NET_ADMIN"))
		}
		return 0, err
	}
	// Closed last: it resets every connection still held.
	defer client.Close()
	ln, err := listenWeb(o.listen)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	if err := sys.dropPrivileges(drop); err != nil {
		return 0, err
	}

	e := exporter.New(exporter.Options{
		Prober:        client,
		Logger:        logger,
		ConfigFile:    o.configFile,
		TimeoutOffset: o.timeoutOffset,
		Version:       cli.VersionString(version),
		Counters:      client.Counters,
		Broadcasts:    rawsock.LocalBroadcasts,
	}, cfg)
	e.Start()
	defer e.Stop()
	// Requests' contexts end with the run: a /probe in flight at
	// SIGTERM is interrupted (its connection reset), not waited for.
	base, endRequests := context.WithCancel(context.Background())
	defer endRequests()
	webLog := logger
	if o.webConfig != "" {
		webLog = slog.New(webLogHandler{logger.Handler(), o.webConfig})
	}
	srv := &http.Server{
		Handler:           e.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(webLog.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	webFile := o.webConfig
	noSystemd := false
	served := make(chan error, 1)
	go func() {
		served <- web.Serve(ln, srv, &web.FlagConfig{WebListenAddresses: &[]string{o.listen}, WebSystemdSocket: &noSystemd, WebConfigFile: &webFile}, webLog)
	}()
	logger.Info("synprobe serve", "version", cli.VersionString(version), "address", ln.Addr().String(), "modules", len(cfg.Modules), "targets", len(cfg.Targets))
	for {
		select {
		case <-reload:
			e.Reload()
		case err := <-served:
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			if problem, known := webConfigProblem(o.webConfig, err); err != nil && o.webConfig != "" && known {
				// Changed for the worse since it was checked.
				return 0, fmt.Errorf("--web.config.file %s: %s", o.webConfig, problem)
			}
			return 0, fmt.Errorf("serving %s: %v", o.listen, err)
		case <-ctx.Done():
			logger.Info("shutting down: resetting the connections held")
			endRequests()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			srv.Shutdown(sctx)
			cancel()
			e.Stop()
			client.Close()
			return cli.ExitOK, nil
		}
	}
}

// checkSources refuses, before set-up, a module whose source is not an
// address of this host as the client takes one (probe.LocalSource):
// every probe of it would be refused. (A reload that brings one is
// accepted, and its probes are refused, each a result of "error".)
func checkSources(file string, cfg *exporter.Config) error {
	names := slices.Sorted(maps.Keys(cfg.Modules))
	for _, name := range names {
		if src := cfg.Modules[name].Options.Source; src.IsValid() {
			if err := probe.LocalSource(src); err != nil {
				return cli.Usagef("%s: module %s: source: not an address of this host (ip address lists them)", file, name)
			}
		}
	}
	return nil
}
