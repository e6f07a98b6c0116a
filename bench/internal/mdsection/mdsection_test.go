package mdsection

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpdate(t *testing.T) {
	old := measuredAt
	t.Cleanup(func() { measuredAt = old })
	measuredAt = func() string { return "at X" }
	path := filepath.Join(t.TempDir(), "B.md")
	steps := []struct {
		name, body, want string
	}{
		{"a", "one", "<!-- a: begin -->\none\n\nat X\n<!-- a: end -->\n"},
		{"b", "two\n", "<!-- a: begin -->\none\n\nat X\n<!-- a: end -->\n\n<!-- b: begin -->\ntwo\n\nat X\n<!-- b: end -->\n"},
		{"a", "three", "<!-- a: begin -->\nthree\n\nat X\n<!-- a: end -->\n\n<!-- b: begin -->\ntwo\n\nat X\n<!-- b: end -->\n"},
	}
	for _, s := range steps {
		if err := Update(path, s.name, s.body); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		if string(got) != s.want {
			t.Fatalf("after updating %s:\n%q\nwant\n%q", s.name, got, s.want)
		}
	}
}

func TestMeasuredAt(t *testing.T) {
	if got := measuredAt(); !strings.HasPrefix(got, "_Measured at commit ") && got != "_Measured outside a git checkout._" {
		t.Errorf("measuredAt() = %q", got)
	}
}
