package cli

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestFlagDocs(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.IntP("count", "c", 0, "probes per target")
	fs.Duration("wait", time.Second, "how long to wait")
	fs.Bool("json", false, "print JSON")
	fs.String("mode", "rst", "the `MODE`: rst or fin")
	fs.String("hidden", "", "not shown")
	fs.MarkHidden("hidden")
	want := []FlagDoc{
		{Name: "count", Shorthand: "c", Arg: "int", Help: "probes per target"},
		{Name: "wait", Arg: "duration", Help: "how long to wait (default 1s)"},
		{Name: "json", Help: "print JSON"},
		{Name: "mode", Arg: "MODE", Help: `the MODE: rst or fin (default "rst")`},
	}
	got := FlagDocs(fs)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FlagDocs:\n got %+v\nwant %+v", got, want)
	}
	// The help says each the same way.
	help := fs.FlagUsagesWrapped(0)
	for _, d := range got {
		if !strings.Contains(help, d.Help+"\n") {
			t.Errorf("%q is not in the help:\n%s", d.Help, help)
		}
	}
}
