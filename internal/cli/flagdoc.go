package cli

import (
	"strings"

	"github.com/spf13/pflag"
)

// FlagDoc is one flag as --help shows it: what synprobe's man page and
// shell completions are generated from (cmd/synprobe/manpage.go,
// completion.go), so that they say what the help says.
type FlagDoc struct {
	Name      string // the long name, without --
	Shorthand string // one letter, or ""
	Arg       string // the value's placeholder (int, duration, string...); "" for a flag that takes none
	Help      string // the help text, with its default as --help prints it
}

// FlagDocs lists the flags of fs in help order, each in the words of fs's
// own help (pflag's FlagUsages, one flag at a time): one source for the
// help, the man page and the completions.
func FlagDocs(fs *pflag.FlagSet) []FlagDoc {
	var docs []FlagDoc
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		one := pflag.NewFlagSet(fs.Name(), pflag.ContinueOnError)
		one.AddFlag(f)
		// pflag writes one flag as: the names and placeholder, three
		// spaces, the help and its default.
		line := strings.TrimSpace(one.FlagUsagesWrapped(0))
		_, help, _ := strings.Cut(line, "   ")
		d := FlagDoc{Name: f.Name, Help: strings.TrimSpace(help)}
		if f.ShorthandDeprecated == "" {
			d.Shorthand = f.Shorthand
		}
		if f.NoOptDefVal == "" {
			d.Arg, _ = pflag.UnquoteUsage(f)
		}
		docs = append(docs, d)
	})
	return docs
}
