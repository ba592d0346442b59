package pdex

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/p2p-payer/p2p/fhir"
)

// reply is how a request of the $member-match operations ends: the
// status, the OperationOutcome issue (or, for a success, the resource),
// the headers, and the log line that says so. The handlers decide one
// reply and write it in one place (reply.write), so that every ending
// is logged and answered alike.
type reply struct {
	status  int
	issue   fhir.Issue // the OperationOutcome's, unless body is set
	body    any        // the resource of a success
	headers [][2]string

	log    *zap.Logger // nil: nothing is logged
	level  zapcore.Level
	msg    string
	fields []zap.Field
}

// refuse is an reply of status with an OperationOutcome of one issue.
func refuse(status int, is fhir.Issue) reply { return reply{status: status, issue: is} }

// logged returns a with the log line msg at level on log.
func (a reply) logged(log *zap.Logger, level zapcore.Level, msg string, fields ...zap.Field) reply {
	a.log, a.level, a.msg, a.fields = log, level, msg, fields
	return a
}

// header returns a with header k set to v.
func (a reply) header(k, v string) reply {
	a.headers = append(a.headers, [2]string{k, v})
	return a
}

// write logs a and answers it.
func (a reply) write(w http.ResponseWriter) {
	if a.log != nil {
		if ce := a.log.Check(a.level, a.msg); ce != nil {
			ce.Write(a.fields...)
		}
	}
	for _, h := range a.headers {
		w.Header().Set(h[0], h[1])
	}
	if a.body != nil {
		writeFHIR(w, a.status, a.body)
		return
	}
	writeOutcome(w, a.status, a.issue)
}

// throttled is the 429 of a requester past its rate (why "rate") or its
// cap on failed matches ("failures"), to retry after wait.
func throttled(log *zap.Logger, msg string, wait time.Duration, why string) reply {
	outcome, text := OutcomeThrottled, "too many requests"
	if why == "failures" {
		outcome, text = OutcomeTooManyFailures, "too many failed matches"
	}
	return refuse(http.StatusTooManyRequests, issue("throttled", outcome, text)).
		header("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second))).
		logged(log, zapcore.WarnLevel, msg, zap.String("outcome", outcome), zap.Duration("retry_after", wait))
}

// unreadable is the reply to a body that could not be read (err from a
// MaxBytesReader): 413 when too large, else 400.
func unreadable(err error) reply {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return refuse(http.StatusRequestEntityTooLarge, issue("too-long", OutcomeInvalid, "the body is too large"))
	}
	return refuse(http.StatusBadRequest, issue("structure", OutcomeInvalid, "the body could not be read"))
}
