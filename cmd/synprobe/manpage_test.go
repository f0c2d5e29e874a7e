package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/synprobe/synprobe/internal/cli"
)

// docVerbNames are the verbs the page and the completions must cover:
// synprobe's own (verbs), and those main dispatches (main.go).
func docVerbNames() []string {
	var names []string
	for _, v := range verbs {
		names = append(names, string(v))
	}
	return append(names, "trace", "listener", "serve", "completion", "man")
}

// TestVerbDocs: every verb's help was cut into its sections, flags apart.
func TestVerbDocs(t *testing.T) {
	docs := verbDocs()
	if got, want := strings.Join(verbNames(docs), " "), strings.Join(docVerbNames(), " "); got != want {
		t.Fatalf("documented verbs %q, want %q", got, want)
	}
	// Every verb main dispatches is documented: a new one must be
	// added to verbDocs.
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	dispatched := regexp.MustCompile(`os\.Args\[1\] == "([a-z-]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(dispatched) < 4 {
		t.Fatalf("main.go dispatches %d verbs: has its form changed?", len(dispatched))
	}
	for _, m := range dispatched {
		if !slices.Contains(verbNames(docs), m[1]) {
			t.Errorf("main.go dispatches synprobe %s, which verbDocs (verbdocs.go) leaves out of the man page and completions", m[1])
		}
	}
	for _, d := range docs {
		h := d.help
		if !strings.HasPrefix(h.usage, "synprobe ") {
			t.Errorf("%s: usage %q", d.name, h.usage)
		}
		if len(h.desc) == 0 {
			t.Errorf("%s: no description", d.name)
		}
		if len(d.flags) == 0 {
			t.Errorf("%s: no flags", d.name)
		}
		// The exit statuses, in order, 2 and 3 among them.
		var codes string
		for _, e := range h.exit {
			codes += e.code
			if e.when == "" || strings.Contains(e.when, "Exit status") {
				t.Errorf("%s: exit status %s: %q", d.name, e.code, e.when)
			}
		}
		if codes != "0123" && codes != "023" {
			t.Errorf("%s: exit statuses %q, want 0, (1,) 2 and 3: %+v", d.name, codes, h.exit)
		}
		if len(h.examples) == 0 {
			t.Errorf("%s: no examples", d.name)
		}
		for _, e := range h.examples {
			if !strings.Contains(e.cmd, "synprobe "+d.name) && !(verb(d.name) == verbPing && strings.Contains(e.cmd, "synprobe ")) && !strings.HasPrefix(e.cmd, "curl ") {
				t.Errorf("%s: example %q runs no synprobe %s", d.name, e.cmd, d.name)
			}
			if strings.Contains(e.cmd, "  ") || strings.HasSuffix(e.what, " ") {
				t.Errorf("%s: example cut wrong: %+v", d.name, e)
			}
		}
		// No flag's help leaked into the text around the flags.
		text := strings.Join(h.desc, "\n")
		for _, f := range d.flags {
			if len(f.Help) > 20 && strings.Contains(text, f.Help) {
				t.Errorf("%s: --%s's help is in the description: the flags were not cut out", d.name, f.Name)
			}
			if n := strings.Count(f.Help, "(default"); n > 1 {
				t.Errorf("%s: --%s has %d defaults: %q", d.name, f.Name, n, f.Help)
			}
		}
	}
}

// TestManPageFlags: every flag of every verb, with its help and its one
// default as --help prints them, under that verb's OPTIONS.
func TestManPageFlags(t *testing.T) {
	docs := verbDocs()
	page := manPage(docs)
	options := section(t, page, "OPTIONS")
	groups := strings.Split(options, "\n.SS ")
	for _, d := range docs {
		for _, f := range d.flags {
			entry := ".TP\n" + flagTag(f) + "\n" + roffText(f.Help) + "\n"
			found := false
			for _, g := range groups {
				title, _, _ := strings.Cut(g, "\n")
				if strings.Contains(title, verbTitle(d)) && strings.Contains(g+"\n", entry) {
					found = true
				}
			}
			if !found {
				t.Errorf("synprobe %s --%s is not in the man page's OPTIONS as\n%s", d.name, f.Name, entry)
			}
		}
	}
	// One definition: what ping and scan share is listed once.
	if n := strings.Count(options, `\fB\-\-timeout\fR \fIduration\fR`+"\nhow long to wait for each reply"); n != 1 {
		t.Errorf("ping's and scan's --timeout listed %d times", n)
	}
	if !strings.Contains(options, `\-\-mark\fR \fIuint32\fR`+"\n") || !strings.Contains(options, "(default 0x53594e50)") {
		t.Errorf("--mark's default is not in hex:\n%s", options)
	}
}

func section(t *testing.T, page, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(page, "\n.SH "+name+"\n")
	if !ok {
		t.Fatalf("no section %s", name)
	}
	s, _, _ := strings.Cut(rest, "\n.SH ")
	return s
}

func TestShellLines(t *testing.T) {
	cmd := `sudo synprobe scan --json 198.18.0.2:1-1024 | jq -c 'select(.state == "open" and .port > 1000)'`
	lines := shellLines(cmd, 50)
	for _, l := range lines {
		if len(l) > 50 {
			t.Errorf("%q is wider than 50", l)
		}
	}
	joined := strings.ReplaceAll(strings.Join(lines, "\n"), " \\\n    ", " ")
	if joined != cmd {
		t.Errorf("lines %q do not make %q again", lines, cmd)
	}
	if !strings.Contains(strings.Join(lines, "\n"), `'select(.state == "open" and .port > 1000)'`) {
		t.Errorf("a quoted word was broken: %q", lines)
	}
	// A shell reads the lines as the one command.
	if sh, err := exec.LookPath("sh"); err == nil {
		out, err := exec.Command(sh, "-c", "set -- "+strings.Join(shellLines("a b 'c d' e f g h i j k l m n o p", 10), "\n")+"\necho $#").Output()
		if err != nil || strings.TrimSpace(string(out)) != "15" {
			t.Errorf("sh read %q (%v), want 15 words", out, err)
		}
	}
}

func TestRoffEscape(t *testing.T) {
	for in, want := range map[string]string{
		`--data \r\n`: `\-\-data \er\en`,
		".starts":     `\&.starts`,
		"'quote":      `\&'quote`,
		"1–2 µs":      `1\[u2013]2 \[u00B5]s`,
	} {
		if got := roffText(in); got != want {
			t.Errorf("roffText(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestManPageRenders: man -l renders the page at 80 columns without a
// warning, with every section, verb and flag; groff -ww and mandoc's
// lint find nothing (scripts/deps.sh installs them).
func TestManPageRenders(t *testing.T) {
	man, err := exec.LookPath("man")
	if err != nil {
		t.Skip("man is not installed (scripts/deps.sh installs man-db)")
	}
	docs := verbDocs()
	file := filepath.Join(t.TempDir(), "synprobe.1")
	if err := os.WriteFile(file, []byte(manPage(docs)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(man, "-l", file)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "MAN_KEEP_FORMATTING=", "LANG=C.UTF-8")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("man -l: %v\n%s", err, stderr.String())
	}
	// Bold and underline as overstrikes, if any: the text alone.
	text := regexp.MustCompile(".\b").ReplaceAllString(string(out), "")
	for i, line := range strings.Split(text, "\n") {
		if n := utf8.RuneCountInString(line); n > cli.HelpColumns {
			t.Errorf("line %d is %d columns wide: %q", i+1, n, line)
		}
	}
	for _, s := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES", "FILES", "SEE ALSO"} {
		if !strings.Contains(text, "\n"+s+"\n") {
			t.Errorf("no %s section", s)
		}
	}
	words := strings.Join(strings.Fields(text), " ")
	for _, d := range docs {
		if !strings.Contains(text, d.help.usage) {
			t.Errorf("no synopsis %q", d.help.usage)
		}
		for _, f := range d.flags {
			if !strings.Contains(text, "--"+f.Name) || !strings.Contains(words, strings.Join(strings.Fields(f.Help), " ")) {
				t.Errorf("synprobe %s --%s or its help %q is not on the rendered page", d.name, f.Name, f.Help)
			}
		}
		for _, e := range d.help.examples {
			if !strings.Contains(strings.ReplaceAll(words, ` \ `, " "), e.cmd) {
				t.Errorf("example %q is not on the rendered page", e.cmd)
			}
		}
	}
	if b, err := exec.Command("groff", "-man", "-ww", "-z", file).CombinedOutput(); err != nil || len(b) > 0 {
		t.Errorf("groff -man -ww -z: %v\n%s", err, b)
	}
	if _, err := exec.LookPath("mandoc"); err == nil {
		if b, err := exec.Command("mandoc", "-T", "lint", "-W", "warning", file).CombinedOutput(); err != nil || len(b) > 0 {
			t.Errorf("mandoc -T lint: %v\n%s", err, b)
		}
	}
}

// TestDocVerbs: synprobe man and synprobe completion take their
// arguments or refuse them in one line, exit 2.
func TestDocVerbs(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		out  string // a prefix of stdout, or of the one line of stderr
	}{
		{[]string{"man"}, 0, `.\" Generated by synprobe man`},
		{[]string{"man", "--help"}, 0, "Usage: synprobe man\n"},
		{[]string{"man", "x"}, 2, `synprobe man: man takes no arguments (got "x")`},
		{[]string{"man", "--bogus"}, 2, "synprobe man: unknown flag: --bogus"},
		{[]string{"completion", "bash"}, 0, "# bash completion for synprobe"},
		{[]string{"completion", "zsh"}, 0, "#compdef synprobe\n"},
		{[]string{"completion", "fish"}, 0, "# fish completion for synprobe"},
		{[]string{"completion", "-h"}, 0, "Usage: synprobe completion bash|zsh|fish\n"},
		{[]string{"completion"}, 2, "synprobe completion: completion takes one shell: bash, zsh or fish (got 0 arguments)"},
		{[]string{"completion", "tcsh"}, 2, `synprobe completion: completion "tcsh": want bash, zsh or fish`},
		{[]string{"completion", "bash", "zsh"}, 2, "synprobe completion: completion takes one shell"},
	} {
		var stdout, stderr bytes.Buffer
		var code int
		if c.args[0] == "man" {
			code = manMain(c.args[1:], &stdout, &stderr)
		} else {
			code = completionMain(c.args[1:], &stdout, &stderr)
		}
		got := stdout.String()
		if c.code != 0 {
			got = stderr.String()
			if strings.Count(got, "\n") != 1 || stdout.Len() > 0 {
				t.Errorf("%q: stdout %q, stderr %q: want one line on stderr", c.args, stdout.String(), got)
			}
		}
		if code != c.code || !strings.HasPrefix(got, c.out) {
			t.Errorf("%q: exit %d, %q; want %d, %q...", c.args, code, got, c.code, c.out)
		}
		if strings.HasPrefix(c.out, "Usage") {
			for _, line := range strings.Split(got, "\n") {
				if utf8.RuneCountInString(line) > cli.HelpColumns {
					t.Errorf("%q: help line wider than %d: %q", c.args, cli.HelpColumns, line)
				}
			}
		}
	}
}
