package token

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"abcdef.0123456789abcdef", true},
		{"012345.zzzzzzzzzzzzzzzz", true},
		{"ABCDEF.0123456789abcdef", false},
		{"abcdef.0123456789ABCDEF", false},
		{"abcde.0123456789abcdef", false},
		{"abcdef.0123456789abcde", false},
		{"abcdef.0123456789abcdef0", false},
		{"abcdef:0123456789abcdef", false},
		{"abcdef.0123456789abcdef.", false},
		{" abcdef.0123456789abcdef", false},
		{"abcdef.0123456789abcdef\n", false},
		{"", false},
	} {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			tok, err := Parse(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("Parse: %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				checkNoSecret(t, err.Error(), tc.in)
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("error %v is not ErrMalformed", err)
				}
				return
			}
			if tok.Value() != tc.in {
				t.Errorf("Value() = %q", tok.Value())
			}
		})
	}
}

// checkNoSecret fails when msg contains the part after the dot of a
// token-like input.
func checkNoSecret(t *testing.T, msg, input string) {
	t.Helper()
	if _, secret, ok := strings.Cut(input, "."); ok && len(secret) >= 4 && strings.Contains(msg, secret) {
		t.Errorf("message %q contains the secret of the input", msg)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("message %q is not one line", msg)
	}
}

func TestRedaction(t *testing.T) {
	tok := Token{ID: "abcdef", Secret: "0123456789abcdef"}
	for _, s := range []string{tok.String(), fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok), fmt.Sprintf("%v", &tok), fmt.Sprintf("%v %+v", Spec{Token: tok}, &Spec{Token: tok})} {
		if strings.Contains(s, tok.Secret) || !strings.Contains(s, "abcdef") {
			t.Errorf("formatted token %q: want the ID and no secret", s)
		}
	}
}

func TestGenerate(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two generated tokens are equal")
	}
	if _, err := Parse(a.Value()); err != nil {
		t.Fatalf("generated token does not parse: %v", err)
	}
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"abcdef", "abcdef"},
		{"abcdef.0123456789abcdef", "abcdef"},
		{"abcde", ""},
		{"ABCDEF", ""},
		{"abcdef.0123", ""},
		{"abcdefg", ""},
	} {
		got, err := ParseID(tc.in)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("ParseID(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err != nil {
			checkNoSecret(t, err.Error(), tc.in)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"abcdef.0123456789abcdef", "abcdef", "a.b", "", "abcdef.0123456789abcdeF"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			// The message never depends on the input, so it cannot leak it.
			if _, want := Parse(""); err.Error() != want.Error() {
				t.Fatalf("error depends on the input: %v", err)
			}
			return
		}
		if tok.Value() != s || len(tok.ID) != 6 || len(tok.Secret) != 16 {
			t.Fatalf("Parse(%q) = %#v", s, tok)
		}
		for _, c := range tok.ID + tok.Secret {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
				t.Fatalf("Parse(%q) accepted %q", s, c)
			}
		}
		if id, err := ParseID(s); err != nil || id != tok.ID {
			t.Fatalf("ParseID(%q) = %q, %v", s, id, err)
		}
	})
}
