package prodstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// TemporalModule is the module the Temporal server and its SQL tool are
// built from, at the version go.mod requires (the embedded dev server's).
const TemporalModule = "go.temporal.io/server"

// Binaries are the programs a stack runs.
type Binaries struct {
	TemporalServer string // go.temporal.io/server/cmd/server
	SQLTool        string // go.temporal.io/server/cmd/tools/sql (temporal-sql-tool)
	P2P            string // ./cmd/p2p built with -tags nodev
	// SchemaDir is the server module's schema/postgresql/v12 directory.
	SchemaDir string
}

func (b Binaries) check() error {
	for _, f := range []string{b.TemporalServer, b.SQLTool, b.P2P} {
		if f == "" {
			return errors.New("prodstack: Options.Bin is incomplete: use Build")
		}
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("prodstack: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(b.SchemaDir, "temporal", "versioned")); err != nil {
		return fmt.Errorf("prodstack: Temporal schemas: %w", err)
	}
	return nil
}

// BuildOptions say where to build.
type BuildOptions struct {
	// Dir receives the binaries; "" = bin/ at the module root (gitignored).
	// go build is incremental: a second Build with nothing changed only
	// links, in seconds.
	Dir string
	// P2PTags are build tags for p2p besides nodev.
	P2PTags []string
	// P2PName is the p2p binary's file name in Dir; "" = p2p-prod.
	P2PName string
}

// Build builds the Temporal server, temporal-sql-tool and p2p (-tags
// nodev) with the go command on PATH, from this module (go.mod pins the
// server's version and lists both as tools, so go mod download fetches
// them). It must run with the working directory inside the module. A cold
// build of the server takes minutes and about 2.5 GB of memory.
func Build(ctx context.Context, o BuildOptions) (Binaries, error) {
	root, err := ModuleRoot(ctx)
	if err != nil {
		return Binaries{}, err
	}
	dir := o.Dir
	if dir == "" {
		dir = filepath.Join(root, "bin")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, err
	}
	modDir, err := goCmd(ctx, root, "list", "-m", "-f", "{{.Dir}}", TemporalModule)
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{
		TemporalServer: filepath.Join(dir, "temporal-server"),
		SQLTool:        filepath.Join(dir, "temporal-sql-tool"),
		SchemaDir:      filepath.Join(strings.TrimSpace(modDir), "schema", "postgresql", "v12"),
	}
	if _, err := goCmd(ctx, root, "build", "-o", b.TemporalServer, TemporalModule+"/cmd/server"); err != nil {
		return Binaries{}, err
	}
	if _, err := goCmd(ctx, root, "build", "-o", b.SQLTool, TemporalModule+"/cmd/tools/sql"); err != nil {
		return Binaries{}, err
	}
	name := o.P2PName
	if name == "" {
		name = "p2p-prod"
	}
	if b.P2P, err = BuildP2P(ctx, filepath.Join(dir, name), o.P2PTags...); err != nil {
		return Binaries{}, err
	}
	return b, b.check()
}

// BuildP2P builds ./cmd/p2p with -tags nodev and tags into out and
// returns out.
func BuildP2P(ctx context.Context, out string, tags ...string) (string, error) {
	root, err := ModuleRoot(ctx)
	if err != nil {
		return "", err
	}
	_, err = goCmd(ctx, root, "build", "-tags", strings.Join(append([]string{"nodev"}, tags...), ","), "-o", out, "./cmd/p2p")
	return out, err
}

// ModuleRoot is the directory of the main module's go.mod, as the go
// command finds it from the working directory.
func ModuleRoot(ctx context.Context) (string, error) {
	gomod, err := goCmd(ctx, "", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	gomod = strings.TrimSpace(gomod)
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("prodstack: not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

func goCmd(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	// The machine's toolchain: never download another (go.mod's go line
	// names one this machine has).
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
