// Package mdsection keeps one generated section of a Markdown file up to
// date, so that each benchmark rewrites only its own part of BENCHMARKS.md.
package mdsection

import (
	"fmt"
	"os"
	"strings"

	"github.com/tlsboot/tlsboot/internal/atomicfile"
)

// Update replaces the section called name in the file at path with body,
// or appends it when the file has none. The section is delimited by HTML
// comments that Markdown renderers do not show.
func Update(path, name, body string) error {
	begin := fmt.Sprintf("<!-- %s: begin -->", name)
	end := fmt.Sprintf("<!-- %s: end -->", name)
	section := begin + "\n" + strings.TrimSpace(body) + "\n" + end
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(data)
	if i, j := strings.Index(s, begin), strings.Index(s, end); i >= 0 && j > i {
		s = s[:i] + section + s[j+len(end):]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s = strings.TrimRight(s, "\n") + "\n\n"
		}
		s += section + "\n"
	}
	return atomicfile.WriteFile(path, []byte(s), 0o644)
}
