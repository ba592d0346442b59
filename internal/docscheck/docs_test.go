package docscheck

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// root is the repository, seen from this package's directory.
const root = "../.."

// maxREADMELines bounds the README: what a newcomer reads in five minutes.
const maxREADMELines = 250

// setupCommands are the only commands the README's "two commands" section
// may name, in this order.
var setupCommands = []string{"go run ./cmd/p2p dev", "make test"}

// doc is one Markdown file, split into the prose a reader sees and the code
// (fenced blocks and inline spans) a reader runs.
type doc struct {
	path     string   // relative to root, slash-separated
	lines    int      // lines in the file
	prose    []string // lines outside fenced blocks, inline code removed
	code     []string // fenced block lines and inline code spans
	headings []string // heading texts, in order
	fences   [][]string
}

var inlineCode = regexp.MustCompile("`+[^`]*`+")

func load(t *testing.T, rel string) doc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	d := doc{path: rel}
	var fence []string
	inFence := false
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		d.lines++
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			if inFence {
				d.fences = append(d.fences, fence)
				fence = nil
			}
			inFence = !inFence
			continue
		}
		if inFence {
			fence = append(fence, line)
			d.code = append(d.code, line)
			continue
		}
		for _, span := range inlineCode.FindAllString(line, -1) {
			d.code = append(d.code, strings.Trim(span, "`"))
		}
		if h, ok := strings.CutPrefix(line, "#"); ok {
			d.headings = append(d.headings, strings.TrimSpace(strings.TrimLeft(h, "#")))
		}
		d.prose = append(d.prose, inlineCode.ReplaceAllString(line, ""))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if inFence {
		t.Errorf("%s: a fenced code block is never closed", rel)
	}
	return d
}

// docs returns README.md and every docs/*.md.
func docs(t *testing.T) []doc {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := []doc{load(t, "README.md")}
	for _, f := range files {
		out = append(out, load(t, "docs/"+filepath.Base(f)))
	}
	return out
}

// slug is the anchor GitHub gives a heading: lower case, punctuation
// dropped, spaces as hyphens.
func slug(heading string) string {
	heading = strings.ReplaceAll(heading, "`", "")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// anchors returns every anchor of d's headings, numbering repeats as
// GitHub does (x, x-1, x-2…).
func anchors(d doc) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, h := range d.headings {
		s := slug(h)
		if n := seen[s]; n > 0 {
			out[s+"-"+strconv.Itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

var link = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestLinks checks that every relative link of the docs names a file or
// directory inside the repository, and every anchor a heading of its file.
func TestLinks(t *testing.T) {
	all := docs(t)
	byPath := map[string]doc{}
	for _, d := range all {
		byPath[d.path] = d
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, d := range all {
		for _, line := range d.prose {
			for _, m := range link.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				file, anchor, _ := strings.Cut(target, "#")
				rel := d.path
				if file != "" {
					rel = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(d.path), file)))
				}
				abs := filepath.Join(absRoot, filepath.FromSlash(rel))
				if rel == ".." || strings.HasPrefix(rel, "../") {
					t.Errorf("%s: link %q leaves the repository", d.path, target)
					continue
				}
				if _, err := os.Stat(abs); err != nil {
					t.Errorf("%s: link %q: %s does not exist", d.path, target, rel)
					continue
				}
				if anchor == "" {
					continue
				}
				linked, ok := byPath[rel]
				if !ok {
					t.Errorf("%s: link %q: anchors are checked only into README.md and docs/*.md", d.path, m[1])
					continue
				}
				if !anchors(linked)[anchor] {
					t.Errorf("%s: link %q: %s has no heading with anchor #%s", d.path, m[1], rel, anchor)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("found no relative links at all: the link pattern is broken")
	}
}

// TestREADMELinksEveryDoc checks that a reader of the README can reach
// every page under docs/.
func TestREADMELinksEveryDoc(t *testing.T) {
	readme := load(t, "README.md")
	linked := map[string]bool{}
	for _, line := range readme.prose {
		for _, m := range link.FindAllStringSubmatch(line, -1) {
			file, _, _ := strings.Cut(m[1], "#")
			linked[filepath.ToSlash(filepath.Clean(file))] = true
		}
	}
	for _, d := range docs(t)[1:] {
		if !linked[d.path] {
			t.Errorf("README.md does not link %s", d.path)
		}
	}
}

// makeTargets are the targets the Makefile defines.
func makeTargets(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	rule := regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):([^=]|$)`)
	out := map[string]bool{}
	for _, m := range rule.FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	return out
}

// makeCall is `make` followed by its targets, in code.
var makeCall = regexp.MustCompile(`(?:^|[\s;&|(])make((?:\s+[a-z][a-z0-9-]*)+)`)

// TestMakeTargets checks that every `make <target>` the docs name is a
// target of the Makefile.
func TestMakeTargets(t *testing.T) {
	targets := makeTargets(t)
	if !targets["test"] || !targets["help"] {
		t.Fatalf("read Makefile targets %v: the rule pattern is broken", targets)
	}
	named := 0
	for _, d := range docs(t) {
		for _, code := range d.code {
			code, _, _ = strings.Cut(code, "#") // a shell comment is prose
			for _, m := range makeCall.FindAllStringSubmatch(code, -1) {
				for _, target := range strings.Fields(m[1]) {
					named++
					if !targets[target] {
						t.Errorf("%s: `make %s`: the Makefile has no target %q", d.path, target, target)
					}
				}
			}
		}
	}
	if named == 0 {
		t.Fatal("the docs name no make target: the pattern is broken")
	}
}

// subcommands reads p2p's command table from cmd/p2p's source: the keys of
// the map literal assigned to `commands` and of every `commands["…"] = …`.
func subcommands(t *testing.T) map[string]bool {
	t.Helper()
	dir := filepath.Join(root, "cmd", "p2p")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	key := func(e ast.Expr) {
		if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if s, err := strconv.Unquote(lit.Value); err == nil {
				out[s] = true
			}
		}
	}
	isCommands := func(e ast.Expr) bool {
		id, ok := e.(*ast.Ident)
		return ok && id.Name == "commands"
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, name := range n.Names {
					if name.Name != "commands" || i >= len(n.Values) {
						continue
					}
					if lit, ok := n.Values[i].(*ast.CompositeLit); ok {
						for _, el := range lit.Elts {
							if kv, ok := el.(*ast.KeyValueExpr); ok {
								key(kv.Key)
							}
						}
					}
				}
			case *ast.AssignStmt:
				for _, lhs := range n.Lhs {
					if ix, ok := lhs.(*ast.IndexExpr); ok && isCommands(ix.X) {
						key(ix.Index)
					}
				}
			}
			return true
		})
	}
	// Today's table has eight commands; fewer found means its shape
	// changed and this reader must follow.
	if len(out) < 8 || !out["dev"] || !out["api"] || !out["worker"] {
		t.Fatalf("read p2p subcommands %v from cmd/p2p: the command table's shape changed; update subcommands", slices.Sorted(maps.Keys(out)))
	}
	return out
}

// p2pCall is p2p followed by one or two words, in code: `p2p dev`,
// `./cmd/p2p members import`.
var p2pCall = regexp.MustCompile(`(?:^|[\s/(])p2p\s+([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?`)

// TestSubcommands checks that every `p2p <subcommand>` the docs name is a
// command of cmd/p2p.
func TestSubcommands(t *testing.T) {
	cmds := subcommands(t)
	named := 0
	for _, d := range docs(t) {
		for _, code := range d.code {
			for _, m := range p2pCall.FindAllStringSubmatch(code, -1) {
				named++
				if m[2] != "" && cmds[m[1]+" "+m[2]] {
					continue
				}
				if !cmds[m[1]] {
					t.Errorf("%s: %q: cmd/p2p has no such command (it has %v)", d.path, strings.TrimSpace(m[0]), slices.Sorted(maps.Keys(cmds)))
				}
			}
		}
	}
	if named == 0 {
		t.Fatal("the docs name no p2p subcommand: the pattern is broken")
	}
}

// TestREADMELength keeps the README something a newcomer reads in five
// minutes; the manual lives in docs/.
func TestREADMELength(t *testing.T) {
	if n := load(t, "README.md").lines; n > maxREADMELines {
		t.Errorf("README.md has %d lines, more than %d: move detail into docs/", n, maxREADMELines)
	}
}

// TestTwoCommands checks that the README's "two commands" section names
// exactly the two set-up commands, and that CI runs the same test command.
func TestTwoCommands(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## The two commands\n")
	if !ok {
		t.Fatal(`README.md has no "## The two commands" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal(`the "two commands" section has no sh code block`)
	}
	block, _, _ = strings.Cut(block, "```")
	var got []string
	for line := range strings.Lines(block) {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line != "" {
			got = append(got, line)
		}
	}
	if !slices.Equal(got, setupCommands) {
		t.Errorf("the README's two commands are %q, want %q", got, setupCommands)
	}

	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(ci), "\n"), "make test") {
		t.Error(`.ci/run does not run "make test", the README's test command`)
	}
}
