package bulkdata

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/internal/egress"
)

// ErrTypeSink is the fault type of a failure to write to the sink: ours,
// not the partner's, and worth a retry (class transport).
const ErrTypeSink = "bulk_sink"

// FileResult is what Download saw of one file.
type FileResult struct {
	Type      string `json:"type"`
	URL       string `json:"url"`
	Resources int64  `json:"resources"` // non-blank lines
	Bytes     int64  `json:"bytes"`     // as received, after any content coding
	SHA256    string `json:"sha256"`    // hex digest of those bytes
}

// readBuffer is the read buffer of a download: lines up to this size are
// checked in place; longer ones are gathered, up to MaxLineBytes.
const readBuffer = 512 << 10

// errIdle cancels a download that has received nothing for too long.
var errIdle = errors.New("no data received within the idle timeout")

// Download fetches one file of a manifest (output, error or deleted) and
// writes it, byte for byte, to w. The body is streamed: memory stays
// bounded by the read buffer and the longest line (at most MaxLineBytes).
// The bearer token is sent only when the manifest requiresAccessToken, as
// the IG says: files may be on storage that takes no token.
//
// Each line must be a JSON object whose resourceType is f.Type (blank
// lines are allowed and not counted); the number of lines must equal
// f.Count when the server gave one. A file that breaks these rules is a
// validation error bulk_bad_file naming the line number, never its
// content; lines before the bad one have been written, so a caller writing
// to a NDJSONDirSink file aborts it.
//
// Answers: 404 or 410 is the business error bulk_export_expired (ErrExpired:
// kick the export off again); 429, and 503 with Retry-After, downstream
// throttled with Retry-After; other 5xx and 408 downstream; 401/403 auth;
// a connection lost mid-file or idle for DownloadIdleTimeout, transport.
func (c *Client) Download(ctx context.Context, f OutputFile, requiresAccessToken bool, w io.Writer) (FileResult, error) {
	res := FileResult{Type: f.Type, URL: f.URL}
	u, err := c.checkURL("file URL", f.URL)
	if err != nil {
		return res, err
	}
	if !resourceTypeRE.MatchString(f.Type) {
		return res, fault.New(fault.Validation, ErrTypeBadRequest, fmt.Sprintf("partner %s: download: type %.40q is not a resource type", c.cfg.Partner, f.Type))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(c.cfg.DownloadIdleTimeout, func() { cancel(errIdle) })
	defer idle.Stop()

	resp, err := c.do(ctx, "download", requiresAccessToken, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", MediaFHIRNDJSON)
		return req, nil
	})
	if err != nil {
		if context.Cause(ctx) == errIdle {
			return res, fault.Wrap(fault.Transport, ErrTypeUnreachable, "partner "+c.cfg.Partner+": download", errIdle)
		}
		return res, err
	}
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return res, classify("download", c.cfg.Partner, resp, b, c.now(), true, fault.Validation, ErrTypeBadResponse)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/html" {
		return res, fault.New(fault.Validation, ErrTypeBadResponse, "partner "+c.cfg.Partner+": download answered with an HTML page")
	}
	body := &idleReader{r: resp.Body, timer: idle, idle: c.cfg.DownloadIdleTimeout}
	err = c.stream(body, f, w, &res)
	if err != nil && context.Cause(ctx) == errIdle {
		err = fault.Wrap(fault.Transport, ErrTypeUnreachable, "partner "+c.cfg.Partner+": download", errIdle)
	}
	return res, err
}

// idleReader pushes back the idle deadline on every read that brings data.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if n > 0 {
		ir.timer.Reset(ir.idle)
	}
	return n, err
}

// stream reads body line by line, checks each line, and writes it to w and
// the digest.
func (c *Client) stream(body io.Reader, f OutputFile, w io.Writer, res *FileResult) error {
	bad := func(format string, args ...any) error {
		return fault.New(fault.Validation, ErrTypeBadFile,
			fmt.Sprintf("partner %s: %s file: ", c.cfg.Partner, f.Type)+fmt.Sprintf(format, args...))
	}
	h := sha256.New()
	var parser fastjson.Parser
	br := bufio.NewReaderSize(body, readBuffer)
	max := c.cfg.MaxLineBytes
	var long []byte // a line longer than the read buffer, gathered
	var lineNo int64
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				if len(long) > max+2 { // +2: the line's own \r\n
					return bad("line %d is longer than %d bytes", lineNo+1, max)
				}
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if len(line) > 0 {
			lineNo++
			content := bytes.TrimRight(line, "\r\n")
			if len(content) > max {
				return bad("line %d is longer than %d bytes", lineNo, max)
			}
			if len(bytes.TrimSpace(content)) > 0 {
				if why := checkResource(&parser, content, f.Type); why != "" {
					return bad("line %d %s", lineNo, why)
				}
				res.Resources++
			}
			if _, werr := w.Write(line); werr != nil {
				if f, ok := fault.As(werr); ok {
					return f // the sink's own verdict, e.g. an import's byte cap
				}
				return fault.Wrap(fault.Transport, ErrTypeSink, "partner "+c.cfg.Partner+": writing the "+f.Type+" file", werr)
			}
			h.Write(line)
			res.Bytes += int64(len(line))
		}
		if err == io.EOF {
			break
		}
		if f, ok := egress.Fault(err); ok {
			return f // the answer passed the client's cap
		}
		if err != nil {
			return fault.Wrap(fault.Transport, ErrTypeUnreachable, "partner "+c.cfg.Partner+": download cut short", err)
		}
	}
	res.SHA256 = hex.EncodeToString(h.Sum(nil))
	if f.Count != nil && *f.Count != res.Resources {
		return bad("has %d resources, the manifest says %d", res.Resources, *f.Count)
	}
	return nil
}

// checkResource returns why line is not one resource of type want, or "".
// It never quotes the line. fastjson validates strictly (escapes, control
// characters, one value per line) at several times the speed of
// encoding/json, which matters at hundreds of MB per file; p is reused
// from line to line.
func checkResource(p *fastjson.Parser, line []byte, want string) string {
	if !utf8.Valid(line) {
		return "is not UTF-8"
	}
	if fastjson.ValidateBytes(line) != nil {
		return "is not valid JSON"
	}
	v, err := p.ParseBytes(line)
	if err != nil {
		return "is not valid JSON"
	}
	if v.Type() != fastjson.TypeObject {
		return "is not a JSON object"
	}
	rt := v.Get("resourceType")
	if rt == nil || rt.Type() != fastjson.TypeString {
		return "has no resourceType"
	}
	if got := rt.GetStringBytes(); string(got) != want {
		return fmt.Sprintf("is a %.40q, not a %s", got, want)
	}
	return ""
}
