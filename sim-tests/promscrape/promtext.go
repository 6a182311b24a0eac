package promscrape

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Sample is one line of a Prometheus text exposition.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Scrape is everything one /metrics answer held.
type Scrape []Sample

// ParseMetrics reads the Prometheus text format (version 0.0.4): comments and blank lines are
// skipped; each other line is `name{label="value",...} value [timestamp]`.
func ParseMetrics(r io.Reader) (Scrape, error) {
	var out Scrape
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s := Sample{Labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i < 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		} else if line[i] == '{' {
			s.Name = line[:i]
			var err error
			if rest, err = parseLabels(line[i+1:], s.Labels); err != nil {
				return nil, fmt.Errorf("metrics: %q: %w", line, err)
			}
		} else {
			s.Name, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %w", line, err)
		}
		s.Value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseLabels parses `k="v",...}` into m and returns what follows the closing brace.
func parseLabels(s string, m map[string]string) (string, error) {
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return "", fmt.Errorf("bad label in %q", s)
		}
		key := strings.TrimSpace(s[:eq])
		s = s[eq+2:]
		var val strings.Builder
		i := 0
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		if i == len(s) {
			return "", fmt.Errorf("unterminated label value in %q", s)
		}
		m[key] = val.String()
		s = s[i+1:]
	}
}

// Get fetches http://addr+path and hands the body of a 200 answer to read; another status is an
// error with the start of the body.
func Get(ctx context.Context, addr, path string, read func(body io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s%s: %s %s", addr, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return read(resp.Body)
}

// GetJSON fetches http://addr+path and decodes its JSON body into out.
func GetJSON(ctx context.Context, addr, path string, out any) error {
	return Get(ctx, addr, path, func(body io.Reader) error { return json.NewDecoder(body).Decode(out) })
}

// FetchMetrics scrapes http://addr/metrics.
func FetchMetrics(ctx context.Context, addr string) (Scrape, error) {
	var sc Scrape
	err := Get(ctx, addr, "/metrics", func(body io.Reader) error {
		var err error
		sc, err = ParseMetrics(body)
		return err
	})
	return sc, err
}

// matches reports whether s has every label of want.
func (s *Sample) matches(want map[string]string) bool {
	for k, v := range want {
		if s.Labels[k] != v {
			return false
		}
	}
	return true
}

// Sum adds the values of every series of name whose labels include want (label pairs
// "k", "v", ...).
func (sc Scrape) Sum(name string, want ...string) float64 {
	m := pairs(want)
	t := 0.0
	for i := range sc {
		if sc[i].Name == name && sc[i].matches(m) {
			t += sc[i].Value
		}
	}
	return t
}

func pairs(kv []string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Histogram is a Prometheus histogram: cumulative counts by upper bound (LE, ascending, +Inf
// last), the number of observations and their sum.
type Histogram struct {
	LE     []float64
	Counts []float64
	Count  float64
	Sum    float64
}

// Histogram collects histogram name (every series whose labels include want, added up: the
// same histogram of several processes, or several label values).
func (sc Scrape) Histogram(name string, want ...string) Histogram {
	m := pairs(want)
	byLE := map[float64]float64{}
	var h Histogram
	for i := range sc {
		s := &sc[i]
		if !s.matches(m) {
			continue
		}
		switch s.Name {
		case name + "_bucket":
			le, err := strconv.ParseFloat(s.Labels["le"], 64)
			if err == nil {
				byLE[le] += s.Value
			}
		case name + "_count":
			h.Count += s.Value
		case name + "_sum":
			h.Sum += s.Value
		}
	}
	h.LE, h.Counts = buckets(byLE)
	return h
}

// buckets lists the bounds of byLE in ascending order and their counts.
func buckets(byLE map[float64]float64) (le, counts []float64) {
	for b := range byLE {
		le = append(le, b)
	}
	slices.Sort(le)
	for _, b := range le {
		counts = append(counts, byLE[b])
	}
	return le, counts
}

// Sub returns h − earlier (the observations between two scrapes); earlier may be empty.
func (h Histogram) Sub(earlier Histogram) Histogram {
	out := Histogram{Count: h.Count - earlier.Count, Sum: h.Sum - earlier.Sum}
	for i, le := range h.LE {
		c := h.Counts[i]
		if j := slices.Index(earlier.LE, le); j >= 0 {
			c -= earlier.Counts[j]
		}
		out.LE = append(out.LE, le)
		out.Counts = append(out.Counts, c)
	}
	return out
}

// Add returns h + other (the same histogram of two processes).
func (h Histogram) Add(other Histogram) Histogram {
	out := Histogram{Count: h.Count + other.Count, Sum: h.Sum + other.Sum}
	byLE := map[float64]float64{}
	for i, le := range h.LE {
		byLE[le] += h.Counts[i]
	}
	for i, le := range other.LE {
		byLE[le] += other.Counts[i]
	}
	out.LE, out.Counts = buckets(byLE)
	return out
}

// Quantile estimates the q-quantile the way Prometheus's histogram_quantile does: linear
// interpolation inside the bucket that holds it (from 0 for the first bucket); a quantile in
// the +Inf bucket is the highest finite bound. NaN without observations.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.LE) == 0 {
		return math.NaN()
	}
	rank := q * h.Counts[len(h.Counts)-1]
	for i, c := range h.Counts {
		if c < rank {
			continue
		}
		if math.IsInf(h.LE[i], 1) {
			if i == 0 {
				return math.NaN()
			}
			return h.LE[i-1]
		}
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = h.LE[i-1], h.Counts[i-1]
		}
		if c == below {
			return h.LE[i]
		}
		return lo + (h.LE[i]-lo)*(rank-below)/(c-below)
	}
	return h.LE[len(h.LE)-1]
}

// Bound is the smallest bucket bound that at least a fraction q of the observations are at or
// below (for histograms of whole numbers, such as ticks: "p99 ≤ bound"); NaN without
// observations, +Inf if they are only in the +Inf bucket.
func (h Histogram) Bound(q float64) float64 {
	if h.Count == 0 || len(h.LE) == 0 {
		return math.NaN()
	}
	rank := q * h.Counts[len(h.Counts)-1]
	for i, c := range h.Counts {
		if c >= rank {
			return h.LE[i]
		}
	}
	return math.Inf(1)
}

// Fraction is the fraction of observations at or below le (a bucket bound).
func (h Histogram) Fraction(le float64) float64 {
	if i := slices.Index(h.LE, le); i >= 0 && h.Count > 0 {
		return h.Counts[i] / h.Counts[len(h.Counts)-1]
	}
	return math.NaN()
}

// AtMost is the number of observations at or below le (a bucket bound); 0 if h has no bucket
// with that bound, as when nothing was observed.
func (h Histogram) AtMost(le float64) float64 {
	if i := slices.Index(h.LE, le); i >= 0 {
		return h.Counts[i]
	}
	return 0
}
