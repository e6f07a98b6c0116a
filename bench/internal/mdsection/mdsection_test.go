package mdsection

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUpdate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "B.md")
	steps := []struct {
		name, body, want string
	}{
		{"a", "one", "<!-- a: begin -->\none\n<!-- a: end -->\n"},
		{"b", "two\n", "<!-- a: begin -->\none\n<!-- a: end -->\n\n<!-- b: begin -->\ntwo\n<!-- b: end -->\n"},
		{"a", "three", "<!-- a: begin -->\nthree\n<!-- a: end -->\n\n<!-- b: begin -->\ntwo\n<!-- b: end -->\n"},
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
