//go:build !nodev

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/internal/payloadcodec"
	"github.com/p2p-payer/p2p/signing"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from the flag definitions")

// configDoc is where the configuration reference lives.
const configDoc = "../../docs/configuration.md"

// TestConfigurationReference regenerates the configuration reference from
// every subcommand's flags (as -h prints them) and fails when the
// committed docs/configuration.md differs: a flag added, removed or
// renamed, a default or a meaning changed without the doc. go generate
// ./cmd/p2p (make generate) rewrites it.
func TestConfigurationReference(t *testing.T) {
	// Defaults come from P2P_* variables: document the built-in ones.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "P2P_") {
			t.Setenv(k, "")
		}
	}
	got := configurationReference(t)
	if *update {
		if err := os.WriteFile(configDoc, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/configuration.md is stale: run go generate ./cmd/p2p (make generate). Generated:\n%s", got)
	}
}

// docFlag is one flag as -h prints it.
type docFlag struct{ name, env, def, meaning string }

var (
	flagLine    = regexp.MustCompile(`^  -(\S+)`)
	envSuffix   = regexp.MustCompile(` \((P2P_[A-Z0-9_]+)\)$`)
	defSuffix   = regexp.MustCompile(` \(default (.*)\)$`)
	markdownBar = strings.NewReplacer("|", `\|`)
)

// flagsOf runs `p2p <command> -h` and reads the flags it lists.
func flagsOf(t *testing.T, command string) []docFlag {
	t.Helper()
	var out bytes.Buffer
	if err := dispatch(context.Background(), append(strings.Fields(command), "-h"), &out, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("p2p %s -h: %v", command, err)
	}
	var flags []docFlag
	for _, line := range strings.Split(out.String(), "\n") {
		if m := flagLine.FindStringSubmatch(line); m != nil {
			flags = append(flags, docFlag{name: m[1]})
			continue
		}
		text, ok := strings.CutPrefix(line, "    \t")
		if !ok || len(flags) == 0 {
			continue
		}
		f := &flags[len(flags)-1]
		if m := defSuffix.FindStringSubmatch(text); m != nil {
			f.def, text = m[1], strings.TrimSuffix(text, m[0])
			if u, err := strconv.Unquote(f.def); err == nil {
				f.def = u
			}
		}
		if m := envSuffix.FindStringSubmatch(text); m != nil {
			f.env, text = m[1], strings.TrimSuffix(text, m[0])
		}
		f.meaning = strings.TrimSpace(f.meaning + " " + text)
	}
	if len(flags) == 0 {
		t.Fatalf("p2p %s -h lists no flags:\n%s", command, out.String())
	}
	return flags
}

func configurationReference(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(`# Configuration reference

<!-- Generated from the flag definitions by go generate ./cmd/p2p (make generate); do not edit.
TestConfigurationReference fails when this file and the flags disagree. -->

Every setting of every p2p subcommand, as ` + "`p2p <command> -h`" + ` lists it. A flag
given on the command line wins over its environment variable, which wins over
the default. Durations take Go's units (` + "`30s`, `10m`, `36h`" + `) and whole days or
years (` + "`30d`, `6y`" + `). ` + "`p2p dev`" + ` takes only the settings listed under it: the
rest are fixed by the dev stack: SQLite, the signing keys and imports in its data
directory, the embedded Temporal server, the sandbox partner, the
` + "`X-P2P-Partner`" + ` trust header, our NPI 9876543210.
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "\n## p2p %s\n\n%s.\n\n| Flag | Environment | Default | Meaning |\n| --- | --- | --- | --- |\n", n, upperFirst(commands[n].summary))
		for _, f := range flagsOf(t, n) {
			if n == "identity match" && f.name == "workers" && f.def == strconv.Itoa(runtime.GOMAXPROCS(0)) {
				f.def = "the number of CPUs"
			}
			fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", f.name, code(f.env), code(f.def), markdownBar.Replace(f.meaning))
		}
	}
	d := identity.DefaultConfig()
	fmt.Fprintf(&b, `
## Environment only

Read by `+"`p2p api`, `p2p worker`, `p2p dev` and `p2p identity train`"+` (identity.ConfigFromEnv): the
decision thresholds of identity matching, in posterior log2-odds points.

| Environment | Default | Meaning |
| --- | --- | --- |
| `+"`P2P_IDENTITY_MATCH_THRESHOLD`"+` | %s | score from which the best candidate is matched |
| `+"`P2P_IDENTITY_REVIEW_THRESHOLD`"+` | %s | score from which a candidate not matched goes to review; below: no match |
| `+"`P2P_IDENTITY_MARGIN`"+` | %s | points the best candidate must beat a different runner-up by to be matched |
`, code(fmt.Sprint(d.MatchThreshold)), code(fmt.Sprint(d.ReviewThreshold)), code(fmt.Sprint(d.Margin)))
	// Secrets: from the environment only, never flags the process list shows.
	fmt.Fprintf(&b, `
Secrets, read by `+"`p2p api` and `p2p worker`"+` (and the key variables by `+"`p2p audit verify`"+`) from
the environment only, never from flags, which the process list would show
(see [keys.md](keys.md)):

| Environment | Meaning |
| --- | --- |
| %s | the manifest key set (a key set file's JSON) or one private key (JWK or PEM); wins over `+"`--keys-dir`"+` |
| %s | the same for the audit checkpoint keys |
| %s | the same for the access token keys |
| %s | the payload key set (a key set file's JSON) or one key (a JWK, kty oct), which encrypts what p2p hands Temporal; wins over `+"`--keys-dir`"+` |
| %s | a Temporal Cloud API key (or `+"`--temporal-api-key-file`"+`) |
`, code(app.KeyEnv(signing.Manifest)), code(app.KeyEnv(signing.Checkpoint)), code(app.KeyEnv(signing.Token)), code(payloadcodec.KeyEnv), code(app.TemporalAPIKeyEnv))
	return b.Bytes()
}

// code formats s as inline code, or a dash when it is empty.
func code(s string) string {
	if s == "" {
		return "—"
	}
	return "`" + markdownBar.Replace(s) + "`"
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
