package scan

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The largest IPv6 block a Spec may name: a /112, 65536 addresses. IPv4
// blocks may have any size.
const (
	MinIPv6PrefixBits  = 112
	MaxIPv6PrefixAddrs = 1 << (128 - MinIPv6PrefixBits)
)

// The expected verdicts a Spec may carry after '='.
const (
	ExpectOpen     = "open"
	ExpectClosed   = "closed"
	ExpectFiltered = "filtered"
)

// Spec is one target expression: an address, a CIDR block or a host name,
// a port list, and optionally an expected verdict.
//
//	198.18.1.0/24:22,80,443,8000-8100
//	example.org:443=open
//	[2001:db8::1]:22
//	[2001:db8::/120]:80=filtered
type Spec struct {
	Arg    string       // as written
	Host   string       // name to resolve ("" when Prefix is set)
	Prefix netip.Prefix // address or CIDR block, masked; a single address is a /32 or /128
	Ports  []PortRange  // sorted, merged, non-overlapping, not empty
	Expect string       // "", ExpectOpen, ExpectClosed or ExpectFiltered
}

// String formats s in canonical form (IPv4-mapped addresses unmapped,
// prefixes masked, ports merged), which ParseSpec parses back to the same
// Host, Prefix, Ports and Expect.
func (s *Spec) String() string {
	var b strings.Builder
	switch {
	case s.Host != "":
		b.WriteString(s.Host)
	case s.Prefix.Addr().Is4():
		if s.Prefix.IsSingleIP() {
			b.WriteString(s.Prefix.Addr().String())
		} else {
			b.WriteString(s.Prefix.String())
		}
	default:
		b.WriteByte('[')
		if s.Prefix.IsSingleIP() {
			b.WriteString(s.Prefix.Addr().String())
		} else {
			b.WriteString(s.Prefix.String())
		}
		b.WriteByte(']')
	}
	b.WriteByte(':')
	b.WriteString(FormatPorts(s.Ports))
	if s.Expect != "" {
		b.WriteByte('=')
		b.WriteString(s.Expect)
	}
	return b.String()
}

// NumPorts returns the number of ports in s.Ports.
func (s *Spec) NumPorts() int {
	n := 0
	for _, r := range s.Ports {
		n += r.Len()
	}
	return n
}

// PortRange is the ports Lo through Hi, both included.
type PortRange struct{ Lo, Hi uint16 }

// Len returns the number of ports in r.
func (r PortRange) Len() int { return int(r.Hi) - int(r.Lo) + 1 }

// String formats r as "80" or "8000-8100".
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// FormatPorts formats a port list as ParsePorts reads it.
func FormatPorts(ports []PortRange) string {
	var b strings.Builder
	for i, r := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.String())
	}
	return b.String()
}

// ParsePorts parses a comma-separated list of ports and ranges, such as
// "22,80,443,8000-8100". The result is sorted, with overlapping, duplicate
// and adjacent ranges merged. Error messages are meant for the user and
// name the offending item.
func ParsePorts(s string) ([]PortRange, error) { return parsePorts(s, nil) }

// parsePorts is ParsePorts appending to buf[:0].
func parsePorts(s string, buf []PortRange) ([]PortRange, error) {
	if s == "" {
		return nil, &SpecError{Problem: "empty port list"}
	}
	ports := buf[:0]
	for item := range strings.SplitSeq(s, ",") {
		if item == "" {
			return nil, &SpecError{Problem: "empty item in port list", Text: s}
		}
		lo, hi, isRange := strings.Cut(item, "-")
		switch {
		case isRange && lo == "":
			return nil, &SpecError{Problem: "port range has no start", Text: item}
		case isRange && hi == "":
			return nil, &SpecError{Problem: "port range has no end", Text: item}
		}
		l, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		h := l
		if isRange {
			if h, err = parsePort(hi); err != nil {
				return nil, err
			}
			if h < l {
				return nil, &SpecError{Problem: "port range is reversed (the higher port first)", Text: item}
			}
		}
		ports = append(ports, PortRange{l, h})
	}
	return mergePorts(ports), nil
}

// parsePort parses one port number, 1-65535, digits only.
func parsePort(s string) (uint16, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, &SpecError{Problem: "port is not a number", Text: s}
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, &SpecError{Problem: "port is out of range 1-65535", Text: s}
	}
	return uint16(n), nil
}

// mergePorts sorts ranges and merges the ones that overlap or touch.
func mergePorts(ports []PortRange) []PortRange {
	slices.SortFunc(ports, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	out := ports[:0]
	for _, r := range ports {
		if n := len(out); n > 0 && int(r.Lo) <= int(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// ParseSpec parses one target expression:
//
//	ADDR:PORTS             198.18.0.1:80
//	ADDR/BITS:PORTS        198.18.1.0/24:22,80   (the block is masked: .7/24 is .0/24)
//	HOST:PORTS             example.org:443
//	[IPV6]:PORTS           [2001:db8::1]:443
//	[IPV6/BITS]:PORTS      [2001:db8::/120]:80   (at most /112: 65536 addresses)
//
// each optionally followed by "=open", "=closed" or "=filtered". PORTS is
// a list as ParsePorts reads it. IPv4-mapped IPv6 addresses are taken as
// IPv4. Errors are one line, starting with the argument, meant for the
// user.
func ParseSpec(s string) (Spec, error) {
	var spec Spec
	err := parseSpec(s, &spec)
	return spec, err
}

// parseSpec is ParseSpec into spec, whose Ports it reuses.
func parseSpec(s string, into *Spec) error {
	ports0 := into.Ports
	*into = Spec{}
	spec := into
	spec.Arg = s
	// fail reports a problem, and the part of s it is about.
	fail := func(problem string, text ...string) error {
		e := &SpecError{Arg: s, Problem: problem}
		if len(text) > 0 {
			e.Text = text[0]
		}
		*into = Spec{Ports: ports0[:0]}
		return e
	}
	if s == "" {
		return fail("empty target (want host:ports)")
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return fail("unexpected space or control character")
		}
	}

	target, expect, hasExpect := strings.Cut(s, "=")
	var host, ports string
	bracketed := strings.HasPrefix(target, "[")
	if bracketed {
		end := strings.IndexByte(target, ']')
		if end < 0 || strings.IndexByte(target[1:end], '[') >= 0 {
			return fail("unbalanced '[' (want [ipv6]:ports)")
		}
		host = target[1:end]
		rest := target[end+1:]
		if strings.ContainsAny(rest, "[]") {
			return fail("unbalanced ']' (want [ipv6]:ports)")
		}
		if host == "" {
			return fail("missing address in brackets (want [ipv6]:ports)")
		}
		if rest == "" {
			return fail("missing port (want [ipv6]:ports)")
		}
		if rest[0] != ':' {
			return fail("missing ':' after ']' (want [ipv6]:ports)")
		}
		ports = rest[1:]
	} else {
		if strings.IndexByte(target, ']') >= 0 {
			return fail("unbalanced ']' (want [ipv6]:ports)")
		}
		if strings.IndexByte(target, '[') >= 0 {
			return fail("misplaced '[' (want [ipv6]:ports)")
		}
		i := strings.LastIndexByte(target, ':')
		if i < 0 {
			return fail("missing port (want host:ports)")
		}
		host, ports = target[:i], target[i+1:]
		if strings.IndexByte(host, ':') >= 0 {
			return fail("IPv6 addresses need brackets, as in [2001:db8::1]:443")
		}
		if host == "" {
			return fail("missing host (want host:ports)")
		}
	}
	if ports == "" {
		if bracketed {
			return fail("missing port (want [ipv6]:ports)")
		}
		return fail("missing port (want host:ports)")
	}

	// The address, block or name.
	addrStr, bitsStr, hasBits := strings.Cut(host, "/")
	addr, err := netip.ParseAddr(addrStr)
	switch {
	case err == nil && addr.Zone() != "":
		return fail("zoned addresses are not supported", addrStr)
	case err == nil && addr.Is6() && addr.IsLinkLocalUnicast():
		// Which link would need a zone, which is not supported.
		return fail("link-local IPv6 addresses are not supported (they need an interface)", addrStr)
	case err == nil && bracketed && addr.Is4():
		// [198.18.0.1]:80, as the single-target parser takes it.
	case err != nil && bracketed:
		return fail("not an IPv6 address", addrStr)
	case err != nil && addrStr == "":
		return fail("missing address before '/'")
	case err != nil && isDigitsAndDots(addrStr):
		return fail("not a valid IPv4 address", addrStr)
	case err != nil && hasBits:
		return fail("only IP addresses take a /prefix, not host names", addrStr)
	case err != nil:
		if !validHostName(host) {
			return fail("not a valid host name", host)
		}
		spec.Host = host
	}
	if spec.Host == "" {
		maxBits := addr.BitLen()
		bits := maxBits
		if hasBits {
			bits, err = strconv.Atoi(bitsStr)
			if err != nil || bitsStr[0] < '0' || bitsStr[0] > '9' || bits > maxBits {
				return fail(fmt.Sprintf("bad prefix length (want /0 to /%d for %s)", maxBits, family(addr)), bitsStr)
			}
		}
		if addr.Is6() && bits < MinIPv6PrefixBits {
			return fail(fmt.Sprintf("IPv6 blocks larger than a /%d (%d addresses) cannot be scanned", MinIPv6PrefixBits, MaxIPv6PrefixAddrs), "/"+bitsStr)
		}
		if addr.Is4In6() {
			addr, bits = addr.Unmap(), bits-96
		}
		spec.Prefix = netip.PrefixFrom(addr, bits).Masked()
	}

	if spec.Ports, err = parsePorts(ports, ports0); err != nil {
		e := err.(*SpecError)
		return fail(e.Problem, e.Text)
	}

	if hasExpect {
		switch expect {
		case ExpectOpen, ExpectClosed, ExpectFiltered:
			spec.Expect = expect
		case "":
			return fail("missing expectation after '=' (want open, closed or filtered)")
		default:
			return fail("unknown expectation (want open, closed or filtered)", expect)
		}
	}
	return nil
}

// SpecError is a target expression that does not parse.
type SpecError struct {
	Arg     string // the expression
	Problem string // what is wrong, in words that quote none of Arg
	Text    string // the part of Arg the problem is about, if any
}

// Error names the expression, the problem and the part of it at fault.
// For an expression read from a file, print Problem alone: the file may
// hold what must not be shown (ParseFile does so).
func (e *SpecError) Error() string {
	var b strings.Builder
	if e.Arg != "" {
		b.WriteString(argName(e.Arg))
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	if e.Text != "" {
		b.WriteString(": ")
		b.WriteString(strconv.Quote(e.Text))
	}
	return b.String()
}

// argName is s as it goes in an error message: quoted when it holds
// anything but printable ASCII.
func argName(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}

// family names addr's address family.
func family(addr netip.Addr) string {
	if addr.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func isDigitsAndDots(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

// validHostName reports whether s is a plausible DNS name: dot-separated
// labels of 1-63 letters, digits, '-' or '_', an optional final dot, 253
// characters at most without it.
func validHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// maxLine is the longest line ParseFile reads.
const maxLine = 64 << 10

// ParseFile reads target expressions from r, one per line, and calls fn
// with each (the Spec is reused: copy what you keep). Blank lines are
// skipped, and so is everything from a '#' that starts a line or follows
// white space. name is the file's name for error messages, which read
// "name:line: problem" and never quote the file (it may be one that must
// not be shown, such as a password file given by mistake). The first
// error ends the parse; fn's errors are returned as they are.
func ParseFile(r io.Reader, name string, fn func(line int, spec *Spec) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	line := 0
	var spec Spec // one for every line: fn must copy what it keeps
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 {
			text = strings.TrimPrefix(text, "\uFEFF") // byte order mark
		}
		text = stripComment(text)
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		if i := strings.IndexAny(text, " \t"); i >= 0 {
			return fmt.Errorf("%s:%d: one target per line", name, line)
		}
		if err := parseSpec(text, &spec); err != nil {
			return fmt.Errorf("%s:%d: %s", name, line, err.(*SpecError).Problem)
		}
		if err := fn(line, &spec); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s:%d: line longer than %d bytes", name, line+1, maxLine)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// stripComment cuts s at a '#' that starts it or follows a space or tab.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			return s[:i]
		}
	}
	return s
}
