package app

import (
	"fmt"
	"os"

	"go.temporal.io/sdk/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger returns the process logger on stderr: JSON for production,
// console for dev, coloured only when stderr is a terminal (not in a file
// or a pipe). Nothing logged by p2p carries PHI; the transfer id is the
// correlation id on every line about a transfer.
func NewLogger(level string, console bool) (*zap.Logger, error) {
	return newLogger(level, console, console && isTerminal(os.Stderr), "stderr")
}

// newLogger is NewLogger writing to path ("stderr" or a file).
func newLogger(level string, console, colour bool, path string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	cfg := zap.NewProductionConfig()
	if console {
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
		if colour {
			cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.OutputPaths = []string{path}
	return cfg.Build()
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// TemporalLogger adapts z to the Temporal SDK's logger, so that SDK lines
// go through the same sink and level.
func TemporalLogger(z *zap.Logger) log.Logger {
	return temporalLogger{z.WithOptions(zap.AddCallerSkip(1)).Sugar()}
}

type temporalLogger struct{ s *zap.SugaredLogger }

func (l temporalLogger) Debug(msg string, kv ...any) { l.s.Debugw(msg, kv...) }
func (l temporalLogger) Info(msg string, kv ...any)  { l.s.Infow(msg, kv...) }
func (l temporalLogger) Warn(msg string, kv ...any)  { l.s.Warnw(msg, kv...) }
func (l temporalLogger) Error(msg string, kv ...any) { l.s.Errorw(msg, kv...) }
func (l temporalLogger) With(kv ...any) log.Logger   { return temporalLogger{l.s.With(kv...)} }
