package fhirrest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/fhir"
)

// Defaults of SinkConfig.
const (
	DefaultBatchSize     = 100      // entries per batch Bundle
	DefaultMaxBatchBytes = 8 << 20  // a batch is sent early when it would grow past this
	DefaultMaxLineBytes  = 64 << 20 // one resource; as connectors/bulkdata
	maxReported          = 20       // rejected entries named in an error
)

// SinkConfig configures a Sink.
type SinkConfig struct {
	Config
	BatchSize     int // 0: DefaultBatchSize
	MaxBatchBytes int // 0: DefaultMaxBatchBytes
	MaxLineBytes  int // 0: DefaultMaxLineBytes
}

// Sink writes imported NDJSON files into our FHIR server.
//
// Each file is read a line at a time; lines go out as batch Bundles of at
// most BatchSize entries (and about MaxBatchBytes), so memory stays at one
// batch whatever the file size. Every entry is an update, PUT
// [Type]/[id] with the id the old payer gave it: an upsert, so a retried
// delivery writes the same resources again instead of duplicating them.
// The server must allow update-as-create (HAPI's default); ids are the
// old payer's, so point the sink at a base URL (tenant or partition) that
// holds imported data only, where they cannot collide with ours.
//
// A batch's entries succeed or fail one by one. Load sends every batch,
// then fails if any entry failed: downstream (retryable; PUT makes the
// retry safe) if one answered 5xx/429/408, else validation naming the
// rejected entries (file, line, type, id, status, issue codes; never
// content).
type Sink struct {
	c   *client
	cfg SinkConfig
}

// Loaded is what Load wrote: resources per type, and batches sent.
type Loaded struct {
	Resources map[string]int
	Batches   int
}

// NewSink checks cfg and returns the Sink.
func NewSink(cfg SinkConfig) (*Sink, error) {
	c, err := newClient(cfg.Config)
	if err != nil {
		return nil, err
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if cfg.MaxLineBytes <= 0 {
		cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	return &Sink{c: c, cfg: cfg}, nil
}

// EntryError is one entry the server did not take.
type EntryError struct {
	File   string // base name of the NDJSON file
	Line   int    // 1-based
	Type   string
	ID     string
	Status string // the entry's response.status, e.g. "422"
	Codes  string // its OperationOutcome issue codes, if any
}

func (e EntryError) String() string {
	s := fmt.Sprintf("%s:%d %s/%s %s", e.File, e.Line, e.Type, e.ID, e.Status)
	if e.Codes != "" {
		s += " (" + e.Codes + ")"
	}
	return s
}

// RejectedError lists the entries a Load could not write. It is the cause
// of Load's *fault.Error.
type RejectedError struct {
	Entries []EntryError // the first maxReported
	Total   int
}

func (e *RejectedError) Error() string {
	parts := make([]string, len(e.Entries))
	for i, x := range e.Entries {
		parts[i] = x.String()
	}
	s := fmt.Sprintf("%d entries not written: %s", e.Total, strings.Join(parts, "; "))
	if e.Total > len(e.Entries) {
		s += "; …"
	}
	return s
}

type batchEntry struct {
	Resource json.RawMessage `json:"resource"`
	Request  struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
}

type pending struct {
	file string
	line int
	typ  string
	id   string
}

// load is one Load call.
type load struct {
	s        *Sink
	entries  []batchEntry
	meta     []pending
	bytes    int
	out      Loaded
	rejected RejectedError
	retry    int // entries that failed in a retryable way
}

// Opener opens the NDJSON file called name for Load: a local path
// (OpenFile) or the key of an object in the import bucket.
type Opener func(ctx context.Context, name string) (io.ReadCloser, error)

// OpenFile is the Opener of local files.
func OpenFile(_ context.Context, path string) (io.ReadCloser, error) { return os.Open(path) }

// Load writes the resources of the NDJSON files names, opened by open.
func (s *Sink) Load(ctx context.Context, open Opener, names []string) (Loaded, error) {
	l := &load{s: s, out: Loaded{Resources: map[string]int{}}}
	for _, p := range names {
		if err := l.file(ctx, open, p); err != nil {
			return l.out, err
		}
	}
	if err := l.flush(ctx); err != nil {
		return l.out, err
	}
	switch {
	case l.retry > 0:
		return l.out, fault.Wrap(fault.Downstream, ErrTypeUnavailable, fmt.Sprintf("sink: %d entries failed on the server's side", l.retry), &l.rejected)
	case l.rejected.Total > 0:
		return l.out, fault.Wrap(fault.Validation, ErrTypeRejected, "sink: the FHIR server rejected entries", &l.rejected)
	}
	return l.out, nil
}

func (l *load) file(ctx context.Context, open Opener, path string) error {
	name := filepath.Base(path)
	f, err := open(ctx, path)
	if err != nil {
		return fault.Wrap(fault.Transport, ErrTypeBadInput, "sink: opening "+name, err)
	}
	defer func() { _ = f.Close() }() // opened read-only: nothing to lose
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), l.s.cfg.MaxLineBytes)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var h struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(line, &h) != nil || !fhir.ValidTypeName(h.ResourceType) || !fhir.ValidID(h.ID) {
			return fault.New(fault.Validation, ErrTypeBadInput, fmt.Sprintf("sink: %s:%d is not a resource with a type and a valid id", name, n))
		}
		if len(l.entries) > 0 && (len(l.entries) >= l.s.cfg.BatchSize || l.bytes+len(line) > l.s.cfg.MaxBatchBytes) {
			if err := l.flush(ctx); err != nil {
				return err
			}
		}
		var e batchEntry
		e.Resource = append(json.RawMessage(nil), line...)
		e.Request.Method = "PUT"
		e.Request.URL = h.ResourceType + "/" + h.ID
		l.entries = append(l.entries, e)
		l.meta = append(l.meta, pending{file: name, line: n, typ: h.ResourceType, id: h.ID})
		l.bytes += len(line)
	}
	if err := sc.Err(); err != nil {
		return fault.Wrap(fault.Validation, ErrTypeBadInput, "sink: reading "+name, err)
	}
	return nil
}

// flush sends the pending entries as one batch and sorts out the
// answers.
func (l *load) flush(ctx context.Context) error {
	if len(l.entries) == 0 {
		return nil
	}
	body, err := json.Marshal(struct {
		ResourceType string       `json:"resourceType"`
		Type         string       `json:"type"`
		Entry        []batchEntry `json:"entry"`
	}{"Bundle", "batch", l.entries})
	if err != nil {
		return fault.Wrap(fault.Validation, ErrTypeBadInput, "sink: batch", err)
	}
	l.out.Batches++
	op := fmt.Sprintf("sink: batch %d", l.out.Batches)
	resp, err := l.s.c.do(ctx, op, "POST", l.s.c.endpoint("", nil), body, fault.Validation)
	if err != nil {
		return err
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Response struct {
				Status  string          `json:"status"`
				Outcome json.RawMessage `json:"outcome"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(resp, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "batch-response" {
		return fault.Wrap(fault.Validation, ErrTypeBadResponse, op, errNotBundle)
	}
	if len(b.Entry) != len(l.entries) {
		return fault.New(fault.Validation, ErrTypeBadResponse, fmt.Sprintf("%s: %d entries answered for %d sent", op, len(b.Entry), len(l.entries)))
	}
	for i, e := range b.Entry {
		m := l.meta[i]
		code := statusCode(e.Response.Status)
		switch {
		case code >= 200 && code < 300:
			l.out.Resources[m.typ]++
			continue
		case code >= 500 || code == 429 || code == 408:
			l.retry++
		}
		l.rejected.Total++
		if len(l.rejected.Entries) < maxReported {
			l.rejected.Entries = append(l.rejected.Entries, EntryError{File: m.file, Line: m.line, Type: m.typ, ID: m.id,
				Status: strconv.Itoa(code), Codes: outcomeCodes(e.Response.Outcome)})
		}
	}
	l.entries, l.meta, l.bytes = l.entries[:0], l.meta[:0], 0
	return nil
}

// statusCode reads the code of a response.status such as "201 Created";
// 0 when there is none.
func statusCode(s string) int {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}
