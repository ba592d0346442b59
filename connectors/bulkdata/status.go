package bulkdata

import (
	"context"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/internal/egress"
)

// State is where an export stands.
type State string

// States of an export.
const (
	StateInProgress State = "in-progress"
	StateComplete   State = "complete"
	StateFailed     State = "failed"
)

// Status is the answer to one status poll: exactly one of InProgress,
// Complete and Failed is set, as State says. It is plain data, so an
// activity can return it to a workflow.
type Status struct {
	State      State       `json:"state"`
	InProgress *InProgress `json:"in_progress,omitempty"`
	Complete   *Complete   `json:"complete,omitempty"`
	Failed     *Failed     `json:"failed,omitempty"`
}

// InProgress is a 202 to a status poll, or a 429 (the server asks us to
// poll less often; the export goes on).
type InProgress struct {
	XProgress  string    `json:"x_progress,omitempty"`  // the server's progress note, shortened and printable
	RetryAfter string    `json:"retry_after,omitempty"` // the Retry-After header as sent: give it to NextPollDelay
	Throttled  bool      `json:"throttled,omitempty"`   // the answer was 429
	ReceivedAt time.Time `json:"received_at"`           // our clock when the answer came: NextPollDelay's now
}

// Complete is a 200 to a status poll: the export is done.
type Complete struct {
	Manifest Manifest  `json:"manifest"`
	Expires  time.Time `json:"expires,omitzero"` // when the server will delete the files; zero if it did not say
}

// Failed is the server saying the export failed: a 4xx, or a 5xx with an
// OperationOutcome whose issues are not transient.
type Failed struct {
	StatusCode int               `json:"status_code"`
	Outcome    *OperationOutcome `json:"outcome,omitempty"` // nil if the body was not one
}

// maxXProgress bounds the progress note we keep.
const maxXProgress = 100

// Poll asks the status URL once where the export stands:
//
//	202                          InProgress (X-Progress, Retry-After)
//	429                          InProgress, Throttled (Retry-After)
//	200                          Complete: the manifest, parsed strictly, every
//	                             file on an allowed host; Expires
//	401, 403                     auth error
//	404, 410                     business error bulk_export_expired (ErrExpired):
//	                             the job is gone; kick off again
//	502, 503, 504; a 5xx whose   downstream error (retry the poll)
//	OperationOutcome is transient
//	or absent
//	other 4xx and 5xx            Failed, with the OperationOutcome
//
// Transport failures are transport errors. Poll never waits: the caller
// sleeps NextPollDelay between polls.
func (c *Client) Poll(ctx context.Context, statusURL string) (Status, error) {
	u, err := c.checkURL("status URL", statusURL)
	if err != nil {
		return Status{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	resp, err := c.do(ctx, "status", true, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json, "+MediaFHIRJSON)
		return req, nil
	})
	if err != nil {
		return Status{}, err
	}
	defer drain(resp.Body)
	now := c.now()
	partner := c.cfg.Partner
	switch code := resp.StatusCode; {
	case code == http.StatusAccepted, code == http.StatusTooManyRequests:
		return Status{State: StateInProgress, InProgress: &InProgress{
			XProgress:  printable(resp.Header.Get("X-Progress"), maxXProgress),
			RetryAfter: resp.Header.Get("Retry-After"),
			Throttled:  code == http.StatusTooManyRequests,
			ReceivedAt: now,
		}}, nil
	case code == http.StatusOK:
		return c.complete(resp)
	default:
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil {
			return Status{}, fault.Wrap(fault.Transport, ErrTypeUnreachable, "partner "+partner+": status: reading the answer", err)
		}
		fe := classify("status", partner, resp, b, now, true, fault.Business, ErrTypeRejected)
		se := fe.Err.(*StatusError)
		// A 4xx that is not about auth, throttling or a vanished job is
		// the server failing the export; so is a 500 or 501 whose
		// OperationOutcome is not transient. Gateways (502-504), 408 and
		// a 500 without an OperationOutcome cannot tell us the job failed:
		// those are errors, and the poll is retried.
		if fe.Type == ErrTypeRejected {
			return Status{State: StateFailed, Failed: &Failed{StatusCode: code, Outcome: se.Outcome}}, nil
		}
		return Status{}, fe
	}
}

// complete reads a 200 status answer.
func (c *Client) complete(resp *http.Response) (Status, error) {
	bad := func(msg string, err error) (Status, error) {
		return Status{}, fault.Wrap(fault.Validation, ErrTypeBadResponse, "partner "+c.cfg.Partner+": status: "+msg, err)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "" && !strings.HasSuffix(mt, "json") {
		return bad("manifest of type "+truncate(mt, 60), nil)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if f, ok := egress.Fault(err); ok {
		return Status{}, f
	}
	if err != nil {
		return Status{}, fault.Wrap(fault.Transport, ErrTypeUnreachable, "partner "+c.cfg.Partner+": status: reading the manifest", err)
	}
	if len(b) > maxManifest {
		return bad("manifest larger than 16 MiB", nil)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return bad("invalid manifest", err)
	}
	for _, list := range [][]OutputFile{m.Output, m.Error, m.Deleted} {
		for _, f := range list {
			if _, err := c.checkURL("manifest file URL", f.URL); err != nil {
				return Status{}, err
			}
		}
	}
	out := &Complete{Manifest: *m}
	if exp := resp.Header.Get("Expires"); exp != "" {
		if t, err := http.ParseTime(exp); err == nil {
			out.Expires = t
		}
	}
	return Status{State: StateComplete, Complete: out}, nil
}

// printable returns s with control characters dropped, at most n bytes.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	return truncate(s, n)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
