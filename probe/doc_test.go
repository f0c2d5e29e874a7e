package probe_test

import (
	"os"
	"strings"
	"testing"
)

// TestDocSnippet: the code in doc.go's "# Use" is ExampleNewClient's body,
// which go test compiles.
func TestDocSnippet(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var snippet []string
	for _, line := range strings.Split(string(doc), "\n") {
		if code, ok := strings.CutPrefix(line, "//\t"); ok {
			snippet = append(snippet, code)
		} else if len(snippet) > 0 {
			break
		}
	}
	body := string(ex)
	start := strings.Index(body, "func ExampleNewClient() {\n")
	if len(snippet) == 0 || start < 0 {
		t.Fatal("no snippet in doc.go, or no ExampleNewClient")
	}
	body = body[start+len("func ExampleNewClient() {\n"):]
	body = body[:strings.Index(body, "\n}\n")]
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "\t"))
	}
	if got, want := strings.Join(snippet, "\n"), strings.Join(lines, "\n"); got != want {
		t.Errorf("doc.go's snippet:\n%s\nExampleNewClient:\n%s", got, want)
	}
}
