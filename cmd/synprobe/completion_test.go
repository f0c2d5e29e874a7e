package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The completion scripts are loaded in the real shells (scripts/deps.sh
// installs bash, zsh and fish) and asked to complete command lines.

// completionCase is a command line and what the shell must offer for its
// last word: every word of want (after any "--flag=" the shell keeps),
// and, if exact, nothing else.
type completionCase struct {
	line  string
	want  []string
	exact bool
	not   []string // words it must not offer
}

// completionEnv is a home whose ssh knows probe-target.example, and a
// HOSTFILE (bash) that names it: the host names the shells complete.
func completionEnv(t *testing.T) []string {
	home := t.TempDir()
	os.Mkdir(filepath.Join(home, ".ssh"), 0o700)
	const host = "probe-target.example"
	if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), []byte(host+" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN5bnByb2JlIHRlc3Qga2V5IG5vdCByZWFs\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(home, "hosts")
	if err := os.WriteFile(hosts, []byte("198.18.0.2 "+host+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "HOME="+home, "HOSTFILE="+hosts, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_DATA_HOME="+filepath.Join(home, ".local"), "ZDOTDIR="+home)
}

func completionCases(t *testing.T, docs []verbDoc) []completionCase {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "targets.txt"), []byte("198.18.0.2:80\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []completionCase{
		{line: "synprobe sc", want: []string{"scan"}},
		{line: "synprobe ", want: verbNames(docs)},
		// Targets: the host names the shell knows (completionEnv).
		{line: "synprobe probe-t", want: []string{"probe-target.example"}}, // ping's
		{line: "synprobe scan -w 1 probe-t", want: []string{"probe-target.example"}, exact: true},
		{line: "synprobe trace probe-t", want: []string{"probe-target.example"}, exact: true},
		{line: "synprobe serve probe-t", exact: true}, // serve takes no target
		{line: "synprobe scan --ret", want: []string{"--retries"}, exact: true},
		{line: "synprobe scan --cou", exact: true}, // ping's
		{line: "synprobe --ret", exact: true},      // scan's
		{line: "synprobe --mode ", want: []string{"rst", "ack", "fin"}, exact: true},
		{line: "synprobe --mode=f", want: []string{"fin"}, exact: true},
		{line: "synprobe scan --mode ", not: []string{"rst", "fin"}}, // not a scan flag: no value
		{line: "synprobe scan --expect c", want: []string{"closed"}, exact: true},
		{line: "synprobe serve --log.level w", want: []string{"warn"}, exact: true},
		{line: "synprobe completion ", want: completionShells, exact: true},
		{line: "synprobe -I l", want: []string{"lo"}},
		{line: "synprobe scan -f " + dir + "/tar", want: []string{"targets.txt"}, exact: true},
		{line: "synprobe trace -f " + dir + "/tar", exact: true}, // --first-hop takes a number
	}
	// Every verb's every flag, and only its own.
	for _, d := range docs {
		var flags []string
		for _, f := range d.flags {
			flags = append(flags, "--"+f.Name)
			if f.Shorthand != "" {
				flags = append(flags, "-"+f.Shorthand)
			}
		}
		cases = append(cases, completionCase{line: "synprobe " + d.name + " -", want: flags, exact: true})
		if verb(d.name) == verbPing {
			cases = append(cases, completionCase{line: "synprobe -", want: flags, exact: true})
		}
	}
	return cases
}

// checkCompletions compares what a shell offered (got: line -> words)
// with the cases.
func checkCompletions(t *testing.T, shell string, cases []completionCase, got map[string][]string) {
	t.Helper()
	for _, c := range cases {
		words, ok := got[c.line]
		if !ok {
			t.Errorf("%s: %q was not completed", shell, c.line)
			continue
		}
		offered := map[string]bool{}
		for _, w := range words {
			if w == "" {
				continue
			}
			if i := strings.Index(w, "="); i > 0 && strings.HasPrefix(w, "-") && !strings.HasSuffix(c.line, " -") {
				w = w[i+1:] // fish: --mode=fin
			}
			offered[filepath.Base(w)] = true
		}
		for _, w := range c.want {
			if !offered[w] {
				t.Errorf("%s: %q: %q not offered (got %q)", shell, c.line, w, words)
			}
			delete(offered, w)
		}
		for _, w := range c.not {
			if offered[w] {
				t.Errorf("%s: %q: offered %q", shell, c.line, w)
			}
		}
		if c.exact && len(offered) > 0 {
			var extra []string
			for w := range offered {
				extra = append(extra, w)
			}
			sort.Strings(extra)
			t.Errorf("%s: %q: offered %q too", shell, c.line, extra)
		}
	}
}

// splitMarked reads "<<LINE" markers, each followed by the words offered.
func splitMarked(out string) map[string][]string {
	got := map[string][]string{}
	var cur string
	for _, l := range strings.Split(out, "\n") {
		if line, ok := strings.CutPrefix(l, "<<"); ok {
			cur = line
			got[cur] = []string{}
			continue
		}
		if cur != "" {
			w, _, _ := strings.Cut(l, "\t") // fish: word, tab, description
			got[cur] = append(got[cur], w)
		}
	}
	return got
}

func writeScript(t *testing.T, name, script string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func TestCompletionBash(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	docs := verbDocs()
	cases := completionCases(t, docs)
	script := writeScript(t, "synprobe.bash", bashCompletion(docs))
	var prog strings.Builder
	fmt.Fprintf(&prog, "source %s || exit 1\ncomplete -p synprobe || exit 1\n", shellQuote(script))
	prog.WriteString(`comp() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); _synprobe; printf '%s\n' "${COMPREPLY[@]}"; }` + "\n")
	for _, c := range cases {
		// As bash splits the line (COMP_WORDBREAKS): --mode=f is
		// three words.
		var words []string
		for _, w := range strings.Split(c.line, " ") {
			if name, value, ok := strings.Cut(w, "="); ok && strings.HasPrefix(w, "-") {
				words = append(words, shellQuote(name), "=", shellQuote(value))
			} else {
				words = append(words, shellQuote(w))
			}
		}
		fmt.Fprintf(&prog, "echo %s\ncomp %s\n", shellQuote("<<"+c.line), strings.Join(words, " "))
	}
	cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog.String())
	cmd.Env = completionEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	first, rest, _ := strings.Cut(string(out), "\n")
	if first != "complete -F _synprobe synprobe" {
		t.Fatalf("complete -p synprobe: %q", first)
	}
	checkCompletions(t, "bash", cases, splitMarked(rest))
}

func TestCompletionFish(t *testing.T) {
	t.Parallel()
	fish, err := exec.LookPath("fish")
	if err != nil {
		t.Skip("fish is not installed (scripts/deps.sh installs it)")
	}
	docs := verbDocs()
	cases := completionCases(t, docs)
	script := writeScript(t, "synprobe.fish", fishCompletion(docs))
	if b, err := exec.Command(fish, "--no-config", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("fish -n: %v\n%s", err, b)
	}
	var prog strings.Builder
	fmt.Fprintf(&prog, "source %s; or exit 1\n", fishQuote(script))
	for _, c := range cases {
		fmt.Fprintf(&prog, "echo %s\ncomplete -C %s\n", fishQuote("<<"+c.line), fishQuote(c.line))
	}
	cmd := exec.Command(fish, "--no-config", "-c", prog.String())
	cmd.Env = completionEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fish: %v\n%s", err, out)
	}
	checkCompletions(t, "fish", cases, splitMarked(string(out)))
}

// zshHarness types each line and a Tab into an interactive zsh (zpty)
// whose compadd also writes what it offers to a file.
const zshHarness = `
zmodload zsh/zpty zsh/stat || exit 1
script=$1 out=$2; shift 2
: > $out
zpty z zsh -f -i
# As installed: _synprobe in a directory of fpath, found by compinit.
zpty -w z "unsetopt autolist listbeep; fpath=(${(q)script:h} \$fpath); autoload -U compinit; compinit -u -D; print -r -- '<<loaded' \$_comps[synprobe] >> ${(q)out}"
zpty -w z "compadd() { if [[ \${@[1,(i)(-|--)]} == *-(O|A|D)\\ * ]]; then builtin compadd \"\$@\"; return; fi; local -a __m; builtin compadd -O __m \"\$@\"; print -rl -- \$__m >> ${(q)out}; builtin compadd \"\$@\"; }"
zpty -w z "bindkey '^I' complete-word"
size() { zstat +size $out }
for line; do
	zpty -w z "print -r -- ${(q):-<<$line} >> ${(q)out}"
	for i in {1..200}; do [[ $(tail -n 1 $out) == "<<$line" ]] && break; sleep 0.05; done
	s=$(size)
	zpty -w -n z "$line"$'\t'
	for i in {1..20}; do (( $(size) != s )) && break; sleep 0.05; done
	sleep 0.05
	zpty -w -n z $'\x15'
done
zpty -w z "print -r -- '<<done' >> ${(q)out}"
for i in {1..200}; do [[ $(tail -n 1 $out) == "<<done" ]] && break; sleep 0.05; done
zpty -d z
`

func TestCompletionZsh(t *testing.T) {
	t.Parallel()
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("zsh is not installed (scripts/deps.sh installs it)")
	}
	docs := verbDocs()
	cases := completionCases(t, docs)
	script := writeScript(t, "_synprobe", zshCompletion(docs))
	if b, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, b)
	}
	// Sourced, as with source <(synprobe completion zsh): compdef.
	if b, err := exec.Command(zsh, "-f", "-c", "autoload -U compinit; compinit -u -D; source "+shellQuote(script)+"; print -r -- $_comps[synprobe]").CombinedOutput(); err != nil || string(b) != "_synprobe\n" {
		t.Fatalf("sourced: %q, %v", b, err)
	}
	harness := writeScript(t, "harness.zsh", zshHarness)
	out := filepath.Join(t.TempDir(), "offered")
	args := []string{"-f", harness, script, out}
	for _, c := range cases {
		args = append(args, c.line)
	}
	cmd := exec.Command(zsh, args...)
	cmd.Env = completionEnv(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zsh: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := splitMarked(string(b))
	if !strings.Contains(string(b), "<<loaded _synprobe\n") {
		t.Fatalf("compinit did not find _synprobe in fpath:\n%s", b)
	}
	if _, ok := got["done"]; !ok {
		t.Fatalf("zsh did not finish:\n%s", b)
	}
	checkCompletions(t, "zsh", cases, got)
}
