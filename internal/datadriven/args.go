package datadriven

import (
	"fmt"
	"strconv"
	"testing"
)

// Args reads a command's key=value arguments. Every read consumes the argument, and Done
// fails the test on any argument left unread, so a misspelt key cannot pass silently. The
// failures name the command's position in the script.
type Args struct {
	t    testing.TB
	pos  string
	keys []string // in command-line order
	vals map[string]string
}

// NewArgs returns the arguments args of the command at pos. A positional argument (no '=')
// or a key given twice fails the test: a command that takes a positional argument gives it a
// key first.
func NewArgs(t testing.TB, pos string, args []Arg) *Args {
	t.Helper()
	p := &Args{t: t, pos: pos, vals: map[string]string{}}
	for _, a := range args {
		if a.Key == "" {
			p.Fail("argument %q is not key=value", a.Val)
		}
		if _, dup := p.vals[a.Key]; dup {
			p.Fail("argument %s given twice", a.Key)
		}
		p.keys = append(p.keys, a.Key)
		p.vals[a.Key] = a.Val
	}
	return p
}

// Fail fails the test at the command's position.
func (p *Args) Fail(format string, a ...any) {
	p.t.Helper()
	p.t.Fatalf("%s: %s", p.pos, fmt.Sprintf(format, a...))
}

// Alias renames the argument alias to key (alias=V reads as key=V); both given fails.
func (p *Args) Alias(alias, key string) {
	p.t.Helper()
	v, ok := p.vals[alias]
	if !ok {
		return
	}
	if _, both := p.vals[key]; both {
		p.Fail("arguments %s and %s are the same", alias, key)
	}
	delete(p.vals, alias)
	p.vals[key] = v
	for i, k := range p.keys {
		if k == alias {
			p.keys[i] = key
		}
	}
}

// Has reports whether argument k is there (and unread) without consuming it.
func (p *Args) Has(k string) bool {
	_, ok := p.vals[k]
	return ok
}

// Lookup consumes argument k, if it is there.
func (p *Args) Lookup(k string) (string, bool) {
	v, ok := p.vals[k]
	delete(p.vals, k)
	return v, ok
}

// Opt consumes argument k, or returns def without it.
func (p *Args) Opt(k, def string) string {
	if v, ok := p.Lookup(k); ok {
		return v
	}
	return def
}

// Str consumes argument k, which must be there.
func (p *Args) Str(k string) string {
	p.t.Helper()
	v, ok := p.Lookup(k)
	if !ok {
		p.Fail("missing argument %s", k)
	}
	return v
}

// Int consumes argument k, a decimal int.
func (p *Args) Int(k string) int {
	p.t.Helper()
	n, err := strconv.Atoi(p.Str(k))
	if err != nil {
		p.Fail("%s: %v", k, err)
	}
	return n
}

// Uint consumes argument k, a decimal uint64.
func (p *Args) Uint(k string) uint64 {
	p.t.Helper()
	n, err := strconv.ParseUint(p.Str(k), 10, 64)
	if err != nil {
		p.Fail("%s: %v", k, err)
	}
	return n
}

// Float consumes argument k, a float64.
func (p *Args) Float(k string) float64 {
	p.t.Helper()
	return p.ParseFloat(p.Str(k))
}

// ParseInt parses s (part of an argument) as a decimal int.
func (p *Args) ParseInt(s string) int {
	p.t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		p.Fail("%v", err)
	}
	return n
}

// ParseFloat parses s (part of an argument) as a float64.
func (p *Args) ParseFloat(s string) float64 {
	p.t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		p.Fail("%v", err)
	}
	return f
}

// Rest consumes the unread arguments and returns them in command-line order.
func (p *Args) Rest() []Arg {
	var out []Arg
	for _, k := range p.keys {
		if v, ok := p.Lookup(k); ok {
			out = append(out, Arg{Key: k, Val: v})
		}
	}
	return out
}

// Done fails the test on any argument left unread.
func (p *Args) Done() {
	p.t.Helper()
	for _, k := range p.keys {
		if _, ok := p.vals[k]; ok {
			p.Fail("unknown argument %s", k)
		}
	}
}
