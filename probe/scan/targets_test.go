package scan

import (
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func pr(lo, hi uint16) PortRange { return PortRange{lo, hi} }

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in   string
		want []PortRange
	}{
		{"80", []PortRange{pr(80, 80)}},
		{"1-65535", []PortRange{pr(1, 65535)}},
		{"65535", []PortRange{pr(65535, 65535)}},
		{"22,80,443,8000-8100", []PortRange{pr(22, 22), pr(80, 80), pr(443, 443), pr(8000, 8100)}},
		{"443,80,22", []PortRange{pr(22, 22), pr(80, 80), pr(443, 443)}},
		{"80,80,80", []PortRange{pr(80, 80)}},                          // duplicates
		{"80,81,79", []PortRange{pr(79, 81)}},                          // adjacent
		{"1000-2000,1500-1600,1990-2010", []PortRange{pr(1000, 2010)}}, // nested and overlapping
		{"5-5", []PortRange{pr(5, 5)}},
		{"0080", []PortRange{pr(80, 80)}},
		{"1-3,10-20,4-9", []PortRange{pr(1, 20)}},
	}
	for _, tt := range tests {
		got, err := ParsePorts(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParsePortsErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `empty port list`},
		{"0", `port is out of range 1-65535: "0"`},
		{"65536", `port is out of range 1-65535: "65536"`},
		{"99999999999999999999999", `port is out of range 1-65535: "99999999999999999999999"`},
		{"0-80", `port is out of range 1-65535: "0"`},
		{"80-70000", `port is out of range 1-65535: "70000"`},
		{"90-80", `port range is reversed (the higher port first): "90-80"`},
		{",", `empty item in port list: ","`},
		{"22,,80", `empty item in port list: "22,,80"`},
		{"22,", `empty item in port list: "22,"`},
		{",22", `empty item in port list: ",22"`},
		{"http", `port is not a number: "http"`},
		{"+80", `port is not a number: "+80"`},
		{"8 0", `port is not a number: "8 0"`},
		{"0x50", `port is not a number: "0x50"`},
		{"-5", `port range has no start: "-5"`},
		{"5-", `port range has no end: "5-"`},
		{"-", `port range has no start: "-"`},
		{"1-2-3", `port is not a number: "2-3"`},
		{"1--3", `port is not a number: "-3"`},
	}
	for _, tt := range tests {
		got, err := ParsePorts(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParsePorts(%q) = %v, %v; want error %q", tt.in, got, err, tt.want)
		}
	}
}

var parseSpecTests = []struct {
	in    string
	want  Spec // Arg is filled in
	canon string
}{
	{"198.18.1.0/24:22,80,443,8000-8100",
		Spec{Prefix: netip.MustParsePrefix("198.18.1.0/24"), Ports: []PortRange{pr(22, 22), pr(80, 80), pr(443, 443), pr(8000, 8100)}},
		"198.18.1.0/24:22,80,443,8000-8100"},
	{"198.18.1.7/24:22", Spec{Prefix: netip.MustParsePrefix("198.18.1.0/24"), Ports: []PortRange{pr(22, 22)}}, "198.18.1.0/24:22"},
	{"198.18.0.1:80", Spec{Prefix: netip.MustParsePrefix("198.18.0.1/32"), Ports: []PortRange{pr(80, 80)}}, "198.18.0.1:80"},
	{"198.18.0.1/32:80", Spec{Prefix: netip.MustParsePrefix("198.18.0.1/32"), Ports: []PortRange{pr(80, 80)}}, "198.18.0.1:80"},
	{"0.0.0.0/0:1-65535", Spec{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Ports: []PortRange{pr(1, 65535)}}, "0.0.0.0/0:1-65535"},
	{"10.1.2.3/8:1=closed", Spec{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Ports: []PortRange{pr(1, 1)}, Expect: "closed"}, "10.0.0.0/8:1=closed"},
	{"host:80", Spec{Host: "host", Ports: []PortRange{pr(80, 80)}}, "host:80"},
	{"Example.ORG.:443=open", Spec{Host: "Example.ORG.", Ports: []PortRange{pr(443, 443)}, Expect: "open"}, "Example.ORG.:443=open"},
	{"my_host-1.lan:22", Spec{Host: "my_host-1.lan", Ports: []PortRange{pr(22, 22)}}, "my_host-1.lan:22"},
	{"db:5432,80,81,79-80=filtered", Spec{Host: "db", Ports: []PortRange{pr(79, 81), pr(5432, 5432)}, Expect: "filtered"}, "db:79-81,5432=filtered"},
	{"[2001:db8::1]:443", Spec{Prefix: netip.MustParsePrefix("2001:db8::1/128"), Ports: []PortRange{pr(443, 443)}}, "[2001:db8::1]:443"},
	{"[2001:DB8::ff/126]:1-3=filtered", Spec{Prefix: netip.MustParsePrefix("2001:db8::fc/126"), Ports: []PortRange{pr(1, 3)}, Expect: "filtered"}, "[2001:db8::fc/126]:1-3=filtered"},
	{"[2001:db8::1:2/112]:80", Spec{Prefix: netip.MustParsePrefix("2001:db8::1:0/112"), Ports: []PortRange{pr(80, 80)}}, "[2001:db8::1:0/112]:80"},
	{"[::1]:22", Spec{Prefix: netip.MustParsePrefix("::1/128"), Ports: []PortRange{pr(22, 22)}}, "[::1]:22"},
	{"[::ffff:198.18.0.1]:80", Spec{Prefix: netip.MustParsePrefix("198.18.0.1/32"), Ports: []PortRange{pr(80, 80)}}, "198.18.0.1:80"},
	{"[::ffff:198.18.0.7/120]:80", Spec{Prefix: netip.MustParsePrefix("198.18.0.0/24"), Ports: []PortRange{pr(80, 80)}}, "198.18.0.0/24:80"},
	{"[198.18.0.1]:80", Spec{Prefix: netip.MustParsePrefix("198.18.0.1/32"), Ports: []PortRange{pr(80, 80)}}, "198.18.0.1:80"},
	{"[198.18.0.0/16]:80", Spec{Prefix: netip.MustParsePrefix("198.18.0.0/16"), Ports: []PortRange{pr(80, 80)}}, "198.18.0.0/16:80"},
}

func TestParseSpec(t *testing.T) {
	for _, tt := range parseSpecTests {
		got, err := ParseSpec(tt.in)
		want := tt.want
		want.Arg = tt.in
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tt.in, got, err, want)
			continue
		}
		canon := got.String()
		if canon != tt.canon {
			t.Errorf("ParseSpec(%q).String() = %q, want %q", tt.in, canon, tt.canon)
		}
		// Round trip: the canonical form parses to the same value.
		again, err := ParseSpec(canon)
		again.Arg = tt.in
		if err != nil || !reflect.DeepEqual(again, want) {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", canon, again, err, want)
		}
	}
}

var parseSpecErrors = []struct{ in, want string }{
	{"", `empty target (want host:ports)`},
	{"ho st:80", `"ho st:80": unexpected space or control character`},
	{"host:80\n", `"host:80\n": unexpected space or control character`},

	// Missing pieces.
	{"host", `host: missing port (want host:ports)`},
	{"host:", `host:: missing port (want host:ports)`},
	{"host=open", `host=open: missing port (want host:ports)`},
	{"198.18.0.0/24", `198.18.0.0/24: missing port (want host:ports)`},
	{":80", `:80: missing host (want host:ports)`},
	{"[::1]", `[::1]: missing port (want [ipv6]:ports)`},
	{"[::1]:", `[::1]:: missing port (want [ipv6]:ports)`},
	{"[::1]:=open", `[::1]:=open: missing port (want [ipv6]:ports)`},
	{"[::1]80", `[::1]80: missing ':' after ']' (want [ipv6]:ports)`},
	{"[]:80", `[]:80: missing address in brackets (want [ipv6]:ports)`},
	{"/24:80", `/24:80: missing address before '/'`},

	// Bad port lists.
	{"host:0", `host:0: port is out of range 1-65535: "0"`},
	{"host:65536", `host:65536: port is out of range 1-65535: "65536"`},
	{"host:http", `host:http: port is not a number: "http"`},
	{"host:22,,80", `host:22,,80: empty item in port list: "22,,80"`},
	{"host:90-80", `host:90-80: port range is reversed (the higher port first): "90-80"`},
	{"host:-5", `host:-5: port range has no start: "-5"`},
	{"host:5-", `host:5-: port range has no end: "5-"`},
	{"host:80:81", `host:80:81: IPv6 addresses need brackets, as in [2001:db8::1]:443`},
	{"[::1]:80#web", `[::1]:80#web: port is not a number: "80#web"`},

	// Brackets.
	{"[::1:80", `[::1:80: unbalanced '[' (want [ipv6]:ports)`},
	{"[[::1]]:80", `[[::1]]:80: unbalanced '[' (want [ipv6]:ports)`},
	{"[::1]]:80", `[::1]]:80: unbalanced ']' (want [ipv6]:ports)`},
	{"[::1]:80]", `[::1]:80]: unbalanced ']' (want [ipv6]:ports)`},
	{"::1]:80", `::1]:80: unbalanced ']' (want [ipv6]:ports)`},
	{"a[::1]:80", `a[::1]:80: unbalanced ']' (want [ipv6]:ports)`},
	{"host[:80", `host[:80: misplaced '[' (want [ipv6]:ports)`},
	{"2001:db8::1:443", `2001:db8::1:443: IPv6 addresses need brackets, as in [2001:db8::1]:443`},
	{"::1", `::1: IPv6 addresses need brackets, as in [2001:db8::1]:443`},
	{"2001:db8::/120:80", `2001:db8::/120:80: IPv6 addresses need brackets, as in [2001:db8::1]:443`},
	{"[example.org]:80", `[example.org]:80: not an IPv6 address: "example.org"`},
	{"[example.org/24]:80", `[example.org/24]:80: not an IPv6 address: "example.org"`},
	{"[fe80::1%eth0]:80", `[fe80::1%eth0]:80: zoned addresses are not supported: "fe80::1%eth0"`},

	// Prefixes.
	{"198.18.0.0/33:80", `198.18.0.0/33:80: bad prefix length (want /0 to /32 for IPv4): "33"`},
	{"198.18.0.0/:80", `198.18.0.0/:80: bad prefix length (want /0 to /32 for IPv4)`},
	{"198.18.0.0/-1:80", `198.18.0.0/-1:80: bad prefix length (want /0 to /32 for IPv4): "-1"`},
	{"198.18.0.0/+8:80", `198.18.0.0/+8:80: bad prefix length (want /0 to /32 for IPv4): "+8"`},
	{"198.18.0.0/x:80", `198.18.0.0/x:80: bad prefix length (want /0 to /32 for IPv4): "x"`},
	{"198.18.0.0/24/8:80", `198.18.0.0/24/8:80: bad prefix length (want /0 to /32 for IPv4): "24/8"`},
	{"[::1/129]:80", `[::1/129]:80: bad prefix length (want /0 to /128 for IPv6): "129"`},
	{"[2001:db8::/64]:80", `[2001:db8::/64]:80: IPv6 blocks larger than a /112 (65536 addresses) cannot be scanned: "/64"`},
	{"[2001:db8::/111]:80", `[2001:db8::/111]:80: IPv6 blocks larger than a /112 (65536 addresses) cannot be scanned: "/111"`},
	{"[::/0]:80", `[::/0]:80: IPv6 blocks larger than a /112 (65536 addresses) cannot be scanned: "/0"`},
	{"[::ffff:0:0/96]:80", `[::ffff:0:0/96]:80: IPv6 blocks larger than a /112 (65536 addresses) cannot be scanned: "/96"`},
	{"example.org/24:80", `example.org/24:80: only IP addresses take a /prefix, not host names: "example.org"`},

	// Names and addresses.
	{"198.18.0.256:80", `198.18.0.256:80: not a valid IPv4 address: "198.18.0.256"`},
	{"01.2.3.4:80", `01.2.3.4:80: not a valid IPv4 address: "01.2.3.4"`},
	{"198.18.0:80", `198.18.0:80: not a valid IPv4 address: "198.18.0"`},
	{"198.18.0.1.5/24:80", `198.18.0.1.5/24:80: not a valid IPv4 address: "198.18.0.1.5"`},
	{"a..b:80", `a..b:80: not a valid host name: "a..b"`},
	{".a:80", `.a:80: not a valid host name: ".a"`},
	{"host!:80", `host!:80: not a valid host name: "host!"`},
	{"héte:80", `"héte:80": not a valid host name: "héte"`},
	{strings.Repeat("a", 64) + ":80", strings.Repeat("a", 64) + `:80: not a valid host name: "` + strings.Repeat("a", 64) + `"`},
	{"198.18.0.1%eth0:80", `198.18.0.1%eth0:80: not a valid host name: "198.18.0.1%eth0"`},

	// Expectations.
	{"host:80=up", `host:80=up: unknown expectation (want open, closed or filtered): "up"`},
	{"host:80=OPEN", `host:80=OPEN: unknown expectation (want open, closed or filtered): "OPEN"`},
	{"host:80=", `host:80=: missing expectation after '=' (want open, closed or filtered)`},
	{"host:80=open=closed", `host:80=open=closed: unknown expectation (want open, closed or filtered): "open=closed"`},
	{`host:80="open"`, `"host:80=\"open\"": unknown expectation (want open, closed or filtered): "\"open\""`},
}

func TestParseSpecErrors(t *testing.T) {
	for _, tt := range parseSpecErrors {
		got, err := ParseSpec(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseSpec(%q) = %+v, %v\n\twant error %s", tt.in, got, err, tt.want)
		}
	}
}

func TestParseFile(t *testing.T) {
	const file = "\uFEFF# targets for the weekly scan\r\n" +
		"\r\n" +
		"198.18.1.0/24:22,80   # the lab\n" +
		"   host:80=open\t# with an expectation\n" +
		"\t[2001:db8::1]:443\n" +
		"#198.18.2.0/24:22\n" +
		"   \n" +
		"db:5432"
	var got []Spec
	var lines []int
	err := ParseFile(strings.NewReader(file), "targets.txt", func(line int, spec *Spec) error {
		got = append(got, *spec)
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, s := range got {
		args = append(args, s.Arg)
	}
	want := []string{"198.18.1.0/24:22,80", "host:80=open", "[2001:db8::1]:443", "db:5432"}
	if !reflect.DeepEqual(args, want) || !reflect.DeepEqual(lines, []int{3, 4, 5, 8}) {
		t.Errorf("ParseFile args = %q on lines %v, want %q on 3, 4, 5, 8", args, lines, want)
	}
	if got[1].Expect != ExpectOpen || got[1].Host != "host" {
		t.Errorf("ParseFile spec 2 = %+v", got[1])
	}

	n := 0
	err = ParseFile(strings.NewReader("# nothing\n\n"), "empty.txt", func(int, *Spec) error { n++; return nil })
	if err != nil || n != 0 {
		t.Errorf("ParseFile(comments only) = %d specs, %v", n, err)
	}
	stop := errors.New("stop")
	if err := ParseFile(strings.NewReader("h:1\nh:2\n"), "f", func(int, *Spec) error { return stop }); err != stop {
		t.Errorf("fn's error: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestParseFileErrors(t *testing.T) {
	// The messages name the file, the line and the problem, and quote none
	// of the file: it may be a file that must not be shown.
	tests := []struct {
		in   string
		want string
	}{
		{"host:80\nhost:0\n", `targets.txt:2: port is out of range 1-65535`},
		{"# a\n\nhost:80#web\n", `targets.txt:3: port is not a number`},
		{"host:80 host:81\n", `targets.txt:1: one target per line`},
		{"host:80\t\"x\"\n", `targets.txt:1: one target per line`},
		{"host:80\n[::1:80 # oops\n", `targets.txt:2: unbalanced '[' (want [ipv6]:ports)`},
		{"\n\n\n[2001:db8::/64]:80", `targets.txt:4: IPv6 blocks larger than a /112 (65536 addresses) cannot be scanned`},
		{"host:80\n" + strings.Repeat("x", maxLine+1) + "\n", `targets.txt:2: line longer than 65536 bytes`},
		{"root:$6$rounds=5000$saltsalt$hashhashhash:19000:0:99999:7:::\n", `targets.txt:1: port is not a number`},
		{"secret:hunter2\n", `targets.txt:1: port is not a number`},
		{"hunter2:80=hunter2\n", `targets.txt:1: unknown expectation (want open, closed or filtered)`},
		{"hunter2!:80\n", `targets.txt:1: not a valid host name`},
	}
	for _, tt := range tests {
		err := ParseFile(strings.NewReader(tt.in), "targets.txt", func(int, *Spec) error { return nil })
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseFile(%.40q) = %v\n\twant error %s", tt.in, err, tt.want)
		}
	}
	err := ParseFile(io.MultiReader(strings.NewReader("host:80\n"), errReader{}), "targets.txt", func(int, *Spec) error { return nil })
	if err == nil || err.Error() != "targets.txt: disk on fire" {
		t.Errorf("ParseFile(failing reader) = %v", err)
	}
}

func TestFormatPortsRoundTrip(t *testing.T) {
	for _, in := range []string{"1", "1-65535", "22,80,443,8000-8100", "1,3,5-7,65535"} {
		p, err := ParsePorts(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := FormatPorts(p); got != in {
			t.Errorf("FormatPorts(ParsePorts(%q)) = %q", in, got)
		}
	}
}

func TestSpecNumPorts(t *testing.T) {
	s, err := ParseSpec("h:22,80,443,8000-8100")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.NumPorts(); n != 104 {
		t.Errorf("NumPorts = %d, want 104", n)
	}
}
