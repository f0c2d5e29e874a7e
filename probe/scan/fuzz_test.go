package scan

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed files in testdata/fuzz/FuzzParseSpec")

// specSeeds are the FuzzParseSpec seeds: name (also the corpus file name),
// what each exercises, and whether ParseSpec accepts it.
var specSeeds = []struct {
	name, what, in string
	ok             bool
}{
	{"v4-block", "IPv4 CIDR block with a port list and a range", "198.18.1.0/24:22,80,443,8000-8100", true},
	{"v4-unmasked", "IPv4 block given by a host inside it: masked", "198.18.1.7/24:22", true},
	{"v4-all", "the whole IPv4 space with every port, just below MaxPairs", "0.0.0.0/0:1-65535", true},
	{"name-expect", "host name with a trailing dot and an expectation", "example.org.:443=open", true},
	{"ports-merge", "unsorted, duplicate, adjacent and overlapping ports", "db:5432,80,81,79-80,80=closed", true},
	{"v6-addr", "bracketed IPv6 address", "[2001:db8::1]:443", true},
	{"v6-block", "bracketed IPv6 /112, the largest allowed, unmasked", "[2001:db8::1:2/112]:80=filtered", true},
	{"v4-mapped-block", "IPv4-mapped IPv6 block: becomes an IPv4 /24", "[::ffff:198.18.0.7/120]:80", true},
	{"v4-bracketed", "IPv4 address in brackets", "[198.18.0.1]:80", true},
	{"v6-too-big", "IPv6 /64: refused with the size message", "[2001:db8::/64]:80", false},
	{"v6-no-brackets", "IPv6 address without brackets", "2001:db8::1:443", false},
	{"unbalanced", "'[' without ']'", "[::1:80", false},
	{"name-prefix", "a prefix length on a host name", "example.org/24:80", false},
	{"bad-prefix", "IPv4 prefix length 33", "198.18.0.0/33:80", false},
	{"reversed-range", "port range high to low", "host:90-80", false},
	{"empty-item", "empty item in the port list", "host:22,,80", false},
	{"expect-unknown", "unknown expectation", "host:80=up", false},
	{"zone", "IPv6 address with a zone", "[fe80::1%eth0]:80", false},
	{"bad-v4", "dotted digits that are not an IPv4 address", "01.2.3.4:80", false},
	{"control", "a newline inside the argument", "host:80\n=open", false},
}

// knownProblems are every SpecError.Problem: fixed text, so that none can
// quote the input.
var knownProblems = map[string]bool{
	"empty item in port list": true, "empty port list": true, "port is not a number": true,
	"port is out of range 1-65535": true, "port range has no end": true, "port range has no start": true,
	"port range is reversed (the higher port first)": true, "IPv6 addresses need brackets, as in [2001:db8::1]:443": true,
	"empty target (want host:ports)": true, "misplaced '[' (want [ipv6]:ports)": true,
	"missing ':' after ']' (want [ipv6]:ports)": true, "missing address before '/'": true,
	"missing address in brackets (want [ipv6]:ports)":               true,
	"missing expectation after '=' (want open, closed or filtered)": true, "missing host (want host:ports)": true,
	"missing port (want [ipv6]:ports)": true, "missing port (want host:ports)": true, "not a valid IPv4 address": true,
	"not a valid host name": true, "not an IPv6 address": true, "only IP addresses take a /prefix, not host names": true,
	"unbalanced '[' (want [ipv6]:ports)": true, "unbalanced ']' (want [ipv6]:ports)": true,
	"unexpected space or control character": true, "unknown expectation (want open, closed or filtered)": true,
	"zoned addresses are not supported":                                  true,
	"IPv6 blocks larger than a /112 (65536 addresses) cannot be scanned": true,
	"bad prefix length (want /0 to /32 for IPv4)":                        true, "bad prefix length (want /0 to /128 for IPv6)": true,
}

// corpusFiles are the seeds also committed in testdata.
var corpusFiles = map[string]bool{
	"v4-block": true, "v6-block": true, "v4-mapped-block": true, "ports-merge": true,
	"v6-too-big": true, "unbalanced": true, "zone": true,
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range specSeeds {
		f.Add(s.in) // s.what
	}
	f.Fuzz(func(t *testing.T, in string) {
		spec, err := ParseSpec(in)
		if err != nil {
			msg := err.Error()
			if msg == "" || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("ParseSpec(%q): error %q is not one line", in, msg)
			}
			// The problem quotes nothing of the input: ParseFile
			// prints it alone for a file's lines.
			var se *SpecError
			if !errors.As(err, &se) || !knownProblems[se.Problem] {
				t.Fatalf("ParseSpec(%q): problem %q is not one of the fixed messages", in, se.Problem)
			}
			return
		}
		if spec.Arg != in {
			t.Fatalf("Arg = %q, want %q", spec.Arg, in)
		}
		checkSpec(t, spec)

		// The canonical form parses to the same value, and is a fixed point.
		canon := spec.String()
		again, err := ParseSpec(canon)
		if err != nil {
			t.Fatalf("ParseSpec(%q) = %+v; its form %q fails: %v", in, spec, canon, err)
		}
		again.Arg = in
		if !reflect.DeepEqual(again, spec) {
			t.Fatalf("ParseSpec(%q) = %+v, but ParseSpec(%q) = %+v", in, spec, canon, again)
		}
		if again.String() != canon {
			t.Fatalf("String not canonical: %q then %q", canon, again.String())
		}
		if p, err := ParsePorts(FormatPorts(spec.Ports)); err != nil || !reflect.DeepEqual(p, spec.Ports) {
			t.Fatalf("ports %v do not round-trip: %v, %v", spec.Ports, p, err)
		}
	})
}

// checkSpec checks the invariants of a parsed Spec.
func checkSpec(t *testing.T, s Spec) {
	t.Helper()
	switch {
	case (s.Host == "") == !s.Prefix.IsValid():
		t.Fatalf("%q: Host %q and Prefix %v", s.Arg, s.Host, s.Prefix)
	case s.Prefix.IsValid() && s.Prefix != s.Prefix.Masked():
		t.Fatalf("%q: prefix %v not masked", s.Arg, s.Prefix)
	case s.Prefix.Addr().Is4In6() || s.Prefix.Addr().Zone() != "":
		t.Fatalf("%q: prefix %v mapped or zoned", s.Arg, s.Prefix)
	case s.Prefix.Addr().Is6() && s.Prefix.Bits() < MinIPv6PrefixBits:
		t.Fatalf("%q: IPv6 prefix %v too large", s.Arg, s.Prefix)
	case s.Host != "" && !validHostName(s.Host):
		t.Fatalf("%q: host %q", s.Arg, s.Host)
	case len(s.Ports) == 0:
		t.Fatalf("%q: no ports", s.Arg)
	}
	switch s.Expect {
	case "", ExpectOpen, ExpectClosed, ExpectFiltered:
	default:
		t.Fatalf("%q: Expect %q", s.Arg, s.Expect)
	}
	for i, r := range s.Ports {
		if r.Lo == 0 || r.Lo > r.Hi || i > 0 && int(r.Lo) <= int(s.Ports[i-1].Hi)+1 {
			t.Fatalf("%q: ports %v not sorted and merged", s.Arg, s.Ports)
		}
	}
}

// TestParseSpecSeeds checks the seeds and the committed corpus files.
func TestParseSpecSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseSpec")
	for _, s := range specSeeds {
		if _, err := ParseSpec(s.in); (err == nil) != s.ok {
			t.Errorf("seed %s (%s): ParseSpec(%q) error %v, want ok=%v", s.name, s.what, s.in, err, s.ok)
		}
		if !corpusFiles[s.name] {
			continue
		}
		path := filepath.Join(dir, s.name)
		data := fmt.Sprintf("go test fuzz v1\nstring(%s)\n", strconv.Quote(s.in))
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Errorf("seed %s: %s is missing or stale (run go test -run TestParseSpecSeeds -update-corpus)", s.name, path)
		}
	}
}

func ExampleParseSpec() {
	for _, arg := range []string{"198.18.1.7/24:8000-8100,22,80", "[2001:db8::1]:443=open", "db:5432", "[2001:db8::/64]:80"} {
		spec, err := ParseSpec(arg)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%-22s host %q prefix %v, %d ports %v, expect %q\n",
			spec.String(), spec.Host, spec.Prefix, spec.NumPorts(), spec.Ports, spec.Expect)
	}
	// Output:
	// 198.18.1.0/24:22,80,8000-8100 host "" prefix 198.18.1.0/24, 103 ports [22 80 8000-8100], expect ""
	// [2001:db8::1]:443=open host "" prefix 2001:db8::1/128, 1 ports [443], expect "open"
	// db:5432                host "db" prefix invalid Prefix, 1 ports [5432], expect ""
	// [2001:db8::/64]:80: IPv6 blocks larger than a /112 (65536 addresses) cannot be scanned: "/64"
}
