package approval

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds of what a message repeats from a request. A message quotes at most
// a few strings (echo) and one list (echoList), so that the request-derived
// content of any message stays within MaxEchoBytes; capMessage then bounds
// the whole message, fixed text included.
const (
	// MaxMessageBytes bounds a Decision's Message, fixed text included.
	MaxMessageBytes = 2 << 10
	// echoBytes is the most of one quoted string a message repeats.
	echoBytes = 200
	// echoItems and echoItemBytes bound a quoted list.
	echoItems     = 5
	echoItemBytes = 100
)

// echo quotes s (Go syntax, so that control characters and invalid UTF-8
// are visible) and truncates it to echoBytes of quoted text, saying how much
// was left out: "abc…"…(812 more bytes).
func echo(s string) string { return echoN(s, echoBytes) }

// echoN is echo with a budget of n bytes of quoted text.
func echoN(s string, n int) string {
	var b strings.Builder
	b.WriteByte('"')
	i := 0
	for i < len(s) {
		_, w := utf8.DecodeRuneInString(s[i:])
		q := strconv.Quote(s[i : i+w])
		q = q[1 : len(q)-1]
		if b.Len()-1+len(q) > n {
			break
		}
		b.WriteString(q)
		i += w
	}
	b.WriteByte('"')
	if i < len(s) {
		fmt.Fprintf(&b, "…(%d more bytes)", len(s)-i)
	}
	return b.String()
}

// echoList quotes at most echoItems items of a list, each with echo's
// bound: `["a" "b"]`, or `first 5 of 812 DNS names ["a" …]` when longer.
// what names the items, in the plural.
func echoList(what string, items []string) string {
	shown := items
	if len(shown) > echoItems {
		shown = shown[:echoItems]
	}
	q := make([]string, len(shown))
	for i, s := range shown {
		q[i] = echoN(s, echoItemBytes)
	}
	list := "[" + strings.Join(q, " ") + "]"
	if len(items) > len(shown) {
		return fmt.Sprintf("first %d of %d %s %s", len(shown), len(items), what, list)
	}
	return list
}

// stringsOf formats each item with %v, for echoList.
func stringsOf[T any](items []T) []string {
	s := make([]string, len(items))
	for i, v := range items {
		s[i] = fmt.Sprint(v)
	}
	return s
}

// capMessage cuts a message to MaxMessageBytes, at a rune boundary, saying
// how much was left out.
func capMessage(msg string) string {
	if len(msg) <= MaxMessageBytes {
		return msg
	}
	marker := fmt.Sprintf("…(%d more bytes)", len(msg))
	cut := MaxMessageBytes - len(marker)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + fmt.Sprintf("…(%d more bytes)", len(msg)-cut)
}
