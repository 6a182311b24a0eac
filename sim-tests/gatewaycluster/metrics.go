package gatewaycluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// sample is one line of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is everything one /metrics answer held.
type scrape []sample

// parseMetrics reads the Prometheus text format (version 0.0.4): comments and blank lines are
// skipped; each other line is `name{label="value",...} value [timestamp]`.
func parseMetrics(r io.Reader) (scrape, error) {
	var out scrape
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i < 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		} else if line[i] == '{' {
			s.name = line[:i]
			var err error
			if rest, err = parseLabels(line[i+1:], s.labels); err != nil {
				return nil, fmt.Errorf("metrics: %q: %w", line, err)
			}
		} else {
			s.name, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: %q: %w", line, err)
		}
		s.value = v
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

// fetchMetrics scrapes http://addr/metrics.
func fetchMetrics(ctx context.Context, addr string) (scrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", addr, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// matches reports whether s has every label of want.
func (s *sample) matches(want map[string]string) bool {
	for k, v := range want {
		if s.labels[k] != v {
			return false
		}
	}
	return true
}

// sum adds the values of every series of name whose labels include want (label pairs
// "k", "v", ...).
func (sc scrape) sum(name string, want ...string) float64 {
	m := pairs(want)
	t := 0.0
	for i := range sc {
		if sc[i].name == name && sc[i].matches(m) {
			t += sc[i].value
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

// histogram is a Prometheus histogram: cumulative counts by upper bound (le), +Inf last.
type histogram struct {
	le     []float64
	counts []float64
	count  float64
	sum    float64
}

// histogram collects histogram name (every series whose labels include want, added up: the
// same histogram of several processes, or several label values).
func (sc scrape) histogram(name string, want ...string) histogram {
	m := pairs(want)
	byLE := map[float64]float64{}
	var h histogram
	for i := range sc {
		s := &sc[i]
		if !s.matches(m) {
			continue
		}
		switch s.name {
		case name + "_bucket":
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if err == nil {
				byLE[le] += s.value
			}
		case name + "_count":
			h.count += s.value
		case name + "_sum":
			h.sum += s.value
		}
	}
	for le := range byLE {
		h.le = append(h.le, le)
	}
	slices.Sort(h.le)
	for _, le := range h.le {
		h.counts = append(h.counts, byLE[le])
	}
	return h
}

// sub returns h − earlier (the observations between two scrapes); earlier may be empty.
func (h histogram) sub(earlier histogram) histogram {
	out := histogram{count: h.count - earlier.count, sum: h.sum - earlier.sum}
	for i, le := range h.le {
		c := h.counts[i]
		if j := slices.Index(earlier.le, le); j >= 0 {
			c -= earlier.counts[j]
		}
		out.le = append(out.le, le)
		out.counts = append(out.counts, c)
	}
	return out
}

// add returns h + other (the same histogram of two processes).
func (h histogram) add(other histogram) histogram {
	out := histogram{count: h.count + other.count, sum: h.sum + other.sum}
	byLE := map[float64]float64{}
	for i, le := range h.le {
		byLE[le] += h.counts[i]
	}
	for i, le := range other.le {
		byLE[le] += other.counts[i]
	}
	for le := range byLE {
		out.le = append(out.le, le)
	}
	slices.Sort(out.le)
	for _, le := range out.le {
		out.counts = append(out.counts, byLE[le])
	}
	return out
}

// quantile estimates the q-quantile the way Prometheus's histogram_quantile does: linear
// interpolation inside the bucket that holds it (from 0 for the first bucket); a quantile in
// the +Inf bucket is the highest finite bound. NaN without observations.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 || len(h.le) == 0 {
		return math.NaN()
	}
	rank := q * h.counts[len(h.counts)-1]
	for i, c := range h.counts {
		if c < rank {
			continue
		}
		if math.IsInf(h.le[i], 1) {
			if i == 0 {
				return math.NaN()
			}
			return h.le[i-1]
		}
		lo, below := 0.0, 0.0
		if i > 0 {
			lo, below = h.le[i-1], h.counts[i-1]
		}
		if c == below {
			return h.le[i]
		}
		return lo + (h.le[i]-lo)*(rank-below)/(c-below)
	}
	return h.le[len(h.le)-1]
}

// bound is the smallest bucket bound that at least a fraction q of the observations are at or
// below (for histograms of whole numbers, such as ticks: "p99 ≤ bound"); NaN without
// observations, +Inf if they are only in the +Inf bucket.
func (h histogram) bound(q float64) float64 {
	if h.count == 0 || len(h.le) == 0 {
		return math.NaN()
	}
	rank := q * h.counts[len(h.counts)-1]
	for i, c := range h.counts {
		if c >= rank {
			return h.le[i]
		}
	}
	return math.Inf(1)
}

// fraction is the fraction of observations at or below le (a bucket bound).
func (h histogram) fraction(le float64) float64 {
	if i := slices.Index(h.le, le); i >= 0 && h.count > 0 {
		return h.counts[i] / h.counts[len(h.counts)-1]
	}
	return math.NaN()
}
