package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/synprobe/synprobe/internal/cli"
)

// The man page (manpage.go) and the shell completions (completion.go) are
// generated from what --help prints: each verb's flag set, walked through
// cli.FlagDocs, and the text around its flags, cut into sections here.
// Nothing about a flag is written twice.

// verbDoc is one verb as its --help shows it.
type verbDoc struct {
	name  string // as typed: ping, scan, trace, ...
	flags []cli.FlagDoc
	help  helpText
	// positional says what the verb's arguments are, for completion:
	// "target" (HOST:PORT and the like), "shell", or "" for none.
	positional string
}

// helpText is a verb's help without its flags, in sections.
type helpText struct {
	usage    string     // the first Usage line, without "Usage: "
	desc     []string   // paragraphs, each on one line
	exit     []exitCode // Exit status
	examples []example
}

type exitCode struct {
	code string // "0"
	when string
}

type example struct {
	cmd  string
	what string // what it does; "" if the help says nothing
}

// verbDocs lists every verb, in the man page's order: synprobe's own
// (verbs: ping, scan), trace, listener, serve (its help copied from
// synprobe-serve: serve_docs.go), completion and man.
func verbDocs() []verbDoc {
	var docs []verbDoc
	for _, v := range verbs {
		var o options
		var b bytes.Buffer
		printUsage(&b, v)
		docs = append(docs, newVerbDoc(string(v), b.String(), newFlagSet(v, &o).FlagUsagesWrapped(helpColumns), cli.FlagDocs(newFlagSet(v, &o)), "target"))
	}
	trace := newTraceFlagSet(new(traceOptions))
	traceFlags := trace.FlagUsagesWrapped(cli.HelpColumns)
	docs = append(docs, newVerbDoc("trace", fmt.Sprintf(traceUsage, traceFlags), traceFlags, cli.FlagDocs(trace), "target"))
	listener := newListenerFlagSet(new(listenerOptions))
	listenerFlags := listener.FlagUsagesWrapped(cli.HelpColumns)
	docs = append(docs, newVerbDoc("listener", listenerUsage+listenerFlags+listenerTail, listenerFlags, cli.FlagDocs(listener), "target"))
	docs = append(docs, verbDoc{name: "serve", flags: serveFlagDocs, help: parseHelp(serveHelpHead + serveHelpTail)})
	for _, v := range []docVerb{completionVerb, manVerb} {
		fs := v.flagSet(new(bool))
		flags := fs.FlagUsagesWrapped(cli.HelpColumns)
		docs = append(docs, newVerbDoc(v.name, v.head+flags+v.tail, flags, cli.FlagDocs(fs), v.positional))
	}
	return docs
}

// newVerbDoc cuts a verb's help, full, around its flags.
func newVerbDoc(name, full, flags string, docs []cli.FlagDoc, positional string) verbDoc {
	head, tail, ok := strings.Cut(full, flags)
	if !ok {
		// A help that does not print its flag set as it is: the tests
		// (TestVerbDocs) catch it; the page still gets the text.
		head = full
	}
	return verbDoc{name: name, flags: docs, help: parseHelp(head + tail), positional: positional}
}

// The help's patterns, compiled when first needed, not at every run's
// init.
var (
	exampleLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^  (\S.*?)(?:\s{2,}(\S.*))?$`) })
	exampleCont = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\s{4,}(\S.*)$`) })
	exitItem    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?:^|[;,] )([0-9]) `) })
)

// parseHelp cuts a help text (without its flags) into sections:
// paragraphs are separated by blank lines; "Usage:", "Flags:", "Exit
// status:" and "Examples:" open theirs.
func parseHelp(text string) helpText {
	var h helpText
	for _, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		lines := strings.Split(para, "\n")
		switch {
		case strings.HasPrefix(lines[0], "Usage:"):
			h.usage = strings.TrimSpace(strings.TrimPrefix(lines[0], "Usage:"))
			continue
		case strings.HasPrefix(lines[0], "Examples:"):
			for _, l := range lines[1:] {
				if m := exampleCont().FindStringSubmatch(l); m != nil && len(h.examples) > 0 && !exampleLine().MatchString(l) {
					e := &h.examples[len(h.examples)-1]
					e.what = strings.TrimSpace(e.what + " " + m[1])
				} else if m := exampleLine().FindStringSubmatch(l); m != nil {
					h.examples = append(h.examples, example{cmd: strings.TrimSpace(m[1]), what: m[2]})
				}
			}
			continue
		}
		var desc []string
		for i, l := range lines {
			if strings.HasPrefix(l, "Exit status:") {
				h.exit = parseExit(strings.Join(lines[i:], " "))
				break
			}
			if l != "Flags:" {
				desc = append(desc, strings.TrimSpace(l))
			}
		}
		if len(desc) > 0 {
			h.desc = append(h.desc, strings.Join(desc, " "))
		}
	}
	return h
}

// parseExit cuts "Exit status: 0 this; 1 that; 2 ..." into its codes.
func parseExit(s string) []exitCode {
	s = strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(s, "Exit status:")), ".")
	idx := exitItem().FindAllStringSubmatchIndex(s, -1)
	var codes []exitCode
	for i, m := range idx {
		end := len(s)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		codes = append(codes, exitCode{code: s[m[2]:m[3]], when: strings.TrimSpace(s[m[1]:end])})
	}
	return codes
}
