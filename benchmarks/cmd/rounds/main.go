// Command rounds measures benchmarks standalone, in alternating rounds, and
// prints each side's median with its range and its ratio to a base side.
//
// Each argument is a -test.bench regexp that selects one benchmark (one
// side). In every round each side runs alone, in a process of its own, one
// after the other; odd rounds run the sides in reverse order, so that no
// side always goes first. A ratio to the base side is taken within each
// round, then the median and range of those ratios are printed, for every
// metric both sides report (ns/op, cpu-ns/op, msgs/s, ...; allocs/op and
// B/op as measured).
//
//	cd benchmarks
//	go run ./cmd/rounds -pkg . -base 'RetryFunc$/^success$/^steadfast$' \
//		'RetryFunc$/^success$/^steadfast$' 'RetryFunc$/^success$/^failsafe-go$'
//
// -pkg compiles the package in that directory once (go test -c); -test runs
// a test binary compiled before. With -lock FILE each round holds an
// exclusive flock on FILE, so that rounds do not overlap with other
// benchmarks that take the same lock. The raw output of every run goes to
// standard error.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rounds:", err)
		os.Exit(1)
	}
}

func run() error {
	n := flag.Int("n", 5, "rounds")
	benchtime := flag.String("benchtime", "1s", "-test.benchtime of each run")
	pkg := flag.String("pkg", "", "directory of the package to compile with go test -c")
	bin := flag.String("test", "", "test binary compiled before (instead of -pkg)")
	base := flag.String("base", "", "the side that ratios are taken to (default: the first)")
	lock := flag.String("lock", "", "file to flock for the length of each round")
	flag.Parse()
	sides := flag.Args()
	if len(sides) == 0 || *n < 1 || (*pkg == "") == (*bin == "") {
		return errors.New("usage: rounds [-n rounds] [-benchtime d] [-base side] [-lock file] (-pkg dir | -test binary) side...")
	}
	if *base == "" {
		*base = sides[0]
	}
	if !slices.Contains(sides, *base) {
		return fmt.Errorf("base %q is not one of the sides", *base)
	}
	dir := "."
	if *pkg != "" {
		tmp, err := os.MkdirTemp("", "rounds")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*bin = filepath.Join(tmp, "bench.test")
		c := exec.Command("go", "test", "-c", "-o", *bin, ".")
		c.Dir, c.Stdout, c.Stderr = *pkg, os.Stderr, os.Stderr
		if err := c.Run(); err != nil {
			return fmt.Errorf("go test -c in %s: %w", *pkg, err)
		}
		dir = *pkg
	} else if abs, err := filepath.Abs(*bin); err == nil {
		*bin = abs
	}

	// results[side][round] holds the metrics of that run.
	results := make(map[string][]map[string]float64, len(sides))
	for r := range *n {
		order := slices.Clone(sides)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		unlock, err := acquire(*lock)
		if err != nil {
			return err
		}
		load := loadAverage()
		for _, side := range order {
			m, err := runSide(*bin, dir, side, *benchtime)
			if err != nil {
				unlock()
				return err
			}
			results[side] = append(results[side], m)
		}
		unlock()
		fmt.Fprintf(os.Stderr, "rounds: round %d of %d done%s\n", r+1, *n, load)
		if *lock != "" && r+1 < *n {
			time.Sleep(2 * time.Second) // let a benchmark waiting for the lock take it
		}
	}
	report(os.Stdout, sides, *base, results)
	return nil
}

// benchLine matches one result line of go test -bench.
var benchLine = regexp.MustCompile(`^Benchmark\S*\s+\d+\s+(.*)$`)

// runSide runs the benchmarks that side selects and returns the metrics of
// the one result line it must print.
func runSide(bin, dir, side, benchtime string) (map[string]float64, error) {
	var out bytes.Buffer
	c := exec.Command(bin, "-test.run", "^$", "-test.bench", side, "-test.benchtime", benchtime, "-test.count", "1")
	c.Dir, c.Stdout, c.Stderr = dir, &out, os.Stderr
	err := c.Run()
	os.Stderr.Write(out.Bytes())
	if err != nil {
		return nil, fmt.Errorf("side %q: %w", side, err)
	}
	var found []map[string]float64
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		sub := benchLine.FindStringSubmatch(sc.Text())
		if sub == nil {
			continue
		}
		f := strings.Fields(sub[1])
		m := make(map[string]float64, len(f)/2)
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[f[i+1]] = v
			}
		}
		found = append(found, m)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("side %q printed %d benchmark results, want 1 (skipped, or a regexp that selects several?)", side, len(found))
	}
	return found[0], nil
}

// report prints, per side, the median and range of each metric over the
// rounds and of its ratio to the base side within each round.
func report(w *os.File, sides []string, base string, results map[string][]map[string]float64) {
	metrics := map[string]bool{}
	for _, rs := range results {
		for _, m := range rs {
			for k := range m {
				metrics[k] = true
			}
		}
	}
	order := []string{"ns/op", "cpu-ns/op", "msgs/s", "cpu-us/msg", "MB/s", "B/op", "allocs/op"}
	var names []string
	for _, k := range order {
		if metrics[k] {
			names = append(names, k)
			delete(metrics, k)
		}
	}
	rest := make([]string, 0, len(metrics))
	for k := range metrics {
		rest = append(rest, k)
	}
	slices.Sort(rest)
	names = append(names, rest...)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "side\trounds\tmetric\tmedian [range]\t÷ base, per round: median [range]\n")
	for _, side := range sides {
		rs := results[side]
		for _, k := range names {
			var vals, ratios []float64
			for r, m := range rs {
				v, ok := m[k]
				if !ok {
					continue
				}
				vals = append(vals, v)
				if b, ok := results[base][r][k]; ok && b != 0 && side != base && k != "B/op" && k != "allocs/op" {
					ratios = append(ratios, v/b)
				}
			}
			if len(vals) == 0 {
				continue
			}
			ratio := ""
			if len(ratios) > 0 {
				ratio = spread(ratios, "%.3g")
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", side, len(vals), k, spread(vals, "%.4g"), ratio)
		}
	}
	tw.Flush()
}

// spread formats the median of vals and their range.
func spread(vals []float64, format string) string {
	s := slices.Clone(vals)
	slices.SortFunc(s, cmp.Compare)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", med, s[0], s[len(s)-1])
}

// loadAverage returns " (load N ...)" with the 1-minute load average where it can
// be read.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return " (load " + f[0] + " at its start, " + time.Now().UTC().Format("15:04:05") + " UTC)"
}
